"""`dagq webhooks add|list|remove|deliveries|show|redeliver` (docs/webhooks.md; the
arguments are in dagq.cli.parser): on the database, like schedules and tenants, for the
tenant --tenant names."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table
from rich.text import Text

from dagq.config import Settings
from dagq.models import WebhookDelivery, WebhookRecord


def webhooks(args: argparse.Namespace, settings: Settings) -> int:
    from dagq.cli.backend import repository
    from dagq.cli.parser import parse_uuid
    from dagq.cli.views import out, print_json
    from dagq.service import webhooks as hooks

    command, tenant = args.webhooks_command, args.tenant
    with repository(settings) as repo:
        if command == "add":
            events = [e.strip() for e in args.events.split(",") if e.strip()]
            made = hooks.add_webhook(repo, settings, tenant=tenant, url=args.url,
                                     events=events, workflow=args.workflow, secret=args.secret)
            print(f"webhook {made.record.id} for tenant {tenant!r}; its secret (shown only "
                  "once) is on the next line:")
            print(made.secret)
        elif command == "list":
            listed = repo.webhooks.list_webhooks(tenant)
            if args.json:
                print_json({"webhooks": [w.model_dump(mode="json") for w in listed]})
            else:
                out.print(webhooks_table(listed))
        elif command == "remove":
            hooks.remove_webhook(repo, parse_uuid(args.webhook_id, "webhook"), tenant)
            print(f"removed webhook {args.webhook_id}")
        elif command == "deliveries":
            found = repo.webhooks.list_deliveries(tenant, status=args.status,
                                                  limit=args.limit)
            if args.json:
                print_json({"deliveries": [d.model_dump(mode="json") for d in found]})
            else:
                out.print(deliveries_table(found))
        elif command == "show":
            delivery = repo.webhooks.get_delivery(
                parse_uuid(args.delivery_id, "delivery"), tenant)
            if args.json:
                print_json(delivery.model_dump(mode="json"))
            else:
                out.print(deliveries_table([delivery]), attempts_table(delivery))
        else:
            hooks.redeliver(repo, parse_uuid(args.delivery_id, "delivery"), tenant)
            print(f"delivery {args.delivery_id} is due again")
    return 0


def webhooks_table(listed: list[WebhookRecord]) -> Table:
    table = Table(title=f"{len(listed)} webhook(s)")
    for column in ("id", "url", "events", "workflow", "created"):
        table.add_column(column, overflow="fold")
    for w in listed:
        table.add_row(*_cells(str(w.id), w.url, ", ".join(w.events), w.workflow or "any",
                              _when(w.created_at)))
    return table


def deliveries_table(found: list[WebhookDelivery]) -> Table:
    table = Table(title=f"{len(found)} deliver(ies)")
    for column in ("id", "event", "run", "status", "attempts", "next / finished",
                   "last error"):
        table.add_column(column, overflow="fold")
    for d in found:
        table.add_row(*_cells(str(d.id), d.event, str(d.run_id)[:8], d.status,
                              str(d.attempts), _when(d.finished_at or d.next_attempt_at),
                              d.last_error or "-"))
    return table


def attempts_table(delivery: WebhookDelivery) -> Table:
    table = Table(title="attempts")
    for column in ("#", "at", "status", "ms", "reply / error"):
        table.add_column(column, overflow="fold")
    for a in delivery.history:
        table.add_row(*_cells(str(a.attempt), _when(a.at), str(a.status_code or "-"),
                              str(a.latency_ms), a.error or a.response or ""))
    return table


def _cells(*values: str) -> list[Text]:
    """Table cells shown as they are: a reply's first bytes, an error or a URL come from
    receivers and tenants, and a plain string cell is read as Rich markup (`[/x]` would
    crash the command, `[bold]` be styled away)."""
    return [Text(value) for value in values]


def _when(value: Any) -> str:
    from dagq.cli.views import when

    return when(value)
