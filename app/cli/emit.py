"""`dagq emit NAME [--payload JSON] [--event-id ID] [--tenant T] [--json]`: emit an
event (docs/triggers.md), on the database (dagq.service.triggers) or, with DAGQ_URL set,
through the API (Client.emit, the tenant of DAGQ_API_KEY). Prints the event's id and the
runs it started (or, with --json, POST /v1/events's answer)."""

from __future__ import annotations

import argparse

from dagq.cli.backend import LocalBackend, backend
from dagq.cli.parser import parse_json_arg
from dagq.cli.views import print_json
from dagq.config import Settings
from dagq.errors import InvalidRequest
from dagq.models import EventRecord
from dagq.service import triggers
from dagq.spec.metadata import check_metadata, parse_pairs


def emit(args: argparse.Namespace, settings: Settings) -> int:
    payload = parse_json_arg(args.payload, "--payload")
    payload = {} if payload is None else payload
    metadata = parse_pairs(args.meta) or None
    check_metadata(metadata)
    triggers.check_event(args.name, payload, args.event_id)  # before connecting
    with backend(settings) as b:
        if isinstance(b, LocalBackend):
            event = triggers.emit(b.repo, tenant=args.tenant, name=args.name,
                                  payload=payload, event_id=args.event_id, metadata=metadata)
        else:
            if args.tenant != "default":
                raise InvalidRequest("--tenant does not apply with DAGQ_URL: an event "
                                     "belongs to the tenant of DAGQ_API_KEY")
            event = b.client.emit(args.name, payload,  # type: ignore[attr-defined]
                                  event_id=args.event_id, metadata=metadata)
    _show(event, as_json=args.json)
    return 0


def _show(event: EventRecord, *, as_json: bool) -> None:
    if as_json:
        print_json(event.model_dump(mode="json"))
        return
    what = "emitted" if event.created else "already emitted (same event_id)"
    print(f"event {event.id} {what}: {event.name}, {len(event.runs)} run(s) started")
    for run in event.runs:
        print(f"{run.run_id}  {run.workflow} v{run.version}  {run.status}")
