"""Event triggers: two workflows subscribe to `ticket.created`; one event starts both
when the ticket is urgent, only the audit when it is not (docs/triggers.md).

    from dagq import Client
    from examples.ticket_triggers import WORKFLOWS, open_ticket

    with Client() as admin:                  # an admin key registers workflows
        for spec in WORKFLOWS:
            admin.register_workflow(spec)
    with Client() as client:                 # any key of the tenant emits
        event = open_ticket(client, "T-42", priority="high")
        print([run.workflow for run in event.runs])   # ['audit', 'escalate']

From the shell: `dagq emit ticket.created --payload '{"ticket": "T-42", "priority": "high"}'
--event-id ticket-T-42`; over HTTP: `POST /v1/events` with the same fields.
"""

from __future__ import annotations

from typing import Any

from dagq import Client
from dagq.models import EventRecord

# Runs for urgent tickets only: the trigger's `if` reads the event's payload.
ESCALATE: dict[str, Any] = {
    "name": "escalate",
    "triggers": [{"event": "ticket.created",
                  "if": {"path": "payload.priority", "in": ["high", "urgent"]}}],
    "nodes": {
        "page": {"executor": "builtin.echo", "params": {"channel": "on-call"}},
        "record": {"executor": "builtin.noop", "depends_on": ["page"]},
    },
}
# Runs for every ticket created or closed: a workflow may subscribe to several events.
AUDIT: dict[str, Any] = {
    "name": "audit",
    "triggers": [{"event": "ticket.created"}, {"event": "ticket.closed"}],
    "nodes": {"log": {"executor": "builtin.echo"}},
}
WORKFLOWS = [ESCALATE, AUDIT]


def open_ticket(client: Client, ticket: str, *, priority: str) -> EventRecord:
    """Tell dagq a ticket was created. The event id makes a retry (a lost reply, a
    redelivered message from the helpdesk) start nothing twice."""
    return client.emit("ticket.created", {"ticket": ticket, "priority": priority},
                       event_id=f"ticket-{ticket}-created")
