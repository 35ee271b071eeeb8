"""Event triggers (issue 33, item 2): an event (`POST /v1/events`, `Client.emit`,
`dagq emit`) starts one run of every workflow whose latest version has a trigger on its
name whose `if` matches, with the payload as the run's inputs.

Each run is prepared exactly as `POST /v1/runs` prepares one (executor defaults, queues,
metadata, concurrency keys; the tenant's quotas at the write), then the event and all
its runs are written in one transaction: a run refused (429, 409) or a workflow that can
no longer be run (422 naming it) refuses the whole event, which writes nothing. The
same (tenant, event_id) again answers with the first event's runs; with another name or
payload it is a 409. Workflows are shared by every tenant (an admin registers them); an
event's runs belong to the tenant that emitted it.
"""

from __future__ import annotations

import re
from typing import Any

from dagq.errors import DagqError, InvalidRequest
from dagq.jsonsafe import unstorable
from dagq.models import EventRecord
from dagq.service.submissions import SubmitRequest, prepare
from dagq.spec.metadata import check_metadata
from dagq.spec.triggers import EVENT_NAME_PATTERN
from dagq.spec.workflow import sha256_json
from dagq.store import NewRun, Store

MAX_EVENT_ID = 256  # the API's schema says the same
MAX_RUNS_PER_EVENT = 100  # workflows one event may start (a fan-out bound)


def check_event(name: Any, payload: Any, event_id: Any) -> None:
    """The checks that need no database (the API's schema makes the same ones)."""
    # fullmatch: re.match lets "$" match before a final newline, which the API's schema
    # refuses; an event named "x\n" would be stored from the client and the CLI only.
    if not isinstance(name, str) or not re.fullmatch(EVENT_NAME_PATTERN, name):
        raise InvalidRequest("an event's name has 1 to 128 characters from [A-Za-z0-9_.:-]",
                             {"field": "name"})
    if not isinstance(payload, dict):
        raise InvalidRequest("an event's payload is a JSON object (it becomes the runs' "
                             "inputs)", {"field": "payload"})
    if event_id is not None and (not isinstance(event_id, str)
                                 or not 0 < len(event_id) <= MAX_EVENT_ID):
        raise InvalidRequest(f"event_id has 1 to {MAX_EVENT_ID} characters",
                             {"field": "event_id"})
    # What Postgres cannot store (a NUL, a non-finite number): the API's edge refuses it,
    # but `dagq emit` on the database and Python callers reached the INSERT (a raw
    # psycopg DataError) with it.
    for field, value in (("payload", payload), ("event_id", event_id)):
        if value is not None and (problem := unstorable(value, field)) is not None:
            raise InvalidRequest(problem, {"field": field})


def emit(repo: Store, *, tenant: str, name: str, payload: Any = None,
         event_id: str | None = None, metadata: Any = None) -> EventRecord:
    """Store the event and start its runs (see the module docstring)."""
    payload = {} if payload is None else payload
    check_event(name, payload, event_id)
    check_metadata(metadata)
    fingerprint = sha256_json({"name": name, "payload": payload})
    if event_id is not None:
        # A repeat (a client's resend after a lost reply) is answered with the first
        # event's runs before anything about the subscribers now is checked: a workflow
        # subscribed since, which cannot run or passes the fan-out bound, made it a 422.
        seen = repo.triggers.existing_event(tenant, event_id, fingerprint)
        if seen is not None:
            return seen
    subscribed = repo.triggers.subscribed(name, payload)
    if len(subscribed) > MAX_RUNS_PER_EVENT:
        raise InvalidRequest(f"event {name!r} would start {len(subscribed)} workflows; at "
                             f"most {MAX_RUNS_PER_EVENT} may subscribe to one event",
                             {"workflows": [wf for wf, _ in subscribed[:20]]})
    runs: list[NewRun] = []
    for workflow, version in subscribed:
        req = SubmitRequest(tenant=tenant, workflow=workflow, version=version,
                            inputs=payload, metadata=metadata)
        try:
            runs.append(prepare(repo, req))
        except DagqError as exc:  # the workflow, not the event, is at fault: say which
            exc.message = f"workflow {workflow!r} (subscribed to {name!r}): {exc.message}"
            exc.args = (exc.message,)
            raise
    return repo.triggers.write_event(tenant=tenant, event_id=event_id, name=name, payload=payload,
                                     fingerprint=fingerprint, runs=runs,
                                     limited=repo.tenants.limited_tenants())


def get_event(repo: Store, event: str, tenant: str | None) -> EventRecord:
    """An event and its runs by id (or the tenant's own event_id); another tenant's is
    not found (`tenant` None: an admin, any tenant's by id)."""
    return repo.triggers.get_event(event, tenant)
