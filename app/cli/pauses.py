"""`dagq pause KIND NAME`, `dagq resume KIND NAME`, `dagq pauses` (docs/flow-control.md):
on the database (as the operator: any kind) or, with DAGQ_URL set, through the API (as
DAGQ_API_KEY: an admin key, or a tenant's key for its own runs). Both print alike."""

from __future__ import annotations

import argparse

from rich.table import Table

from dagq.config import Settings
from dagq.errors import NotFound
from dagq.models import PAUSE_KINDS, PauseRecord


def add_pause_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The arguments of `pause`, `resume` and `pauses` (called by dagq.cli.parser)."""
    pause = sub.add_parser("pause", help="stop leasing a queue's, workflow's, run's or "
                           "tenant's nodes (running ones finish)")
    resume = sub.add_parser("resume", help="end a pause: its nodes are leased again")
    for parser in (pause, resume):
        parser.add_argument("kind", choices=PAUSE_KINDS, metavar="KIND",
                            help=f"one of {', '.join(PAUSE_KINDS)}")
        parser.add_argument("name", metavar="NAME", help="the queue, workflow, run id or "
                            "tenant")
    pause.add_argument("--reason", default=None, help="why (kept with the pause)")
    pause.add_argument("--refuse-submits", action="store_true",
                       help="refuse submits into the pause (409 paused) instead of queueing")
    listing = sub.add_parser("pauses", help="active pauses (who, when, why)")
    listing.add_argument("--history", action="store_true", help="resumed pauses too")
    for parser in (pause, listing):
        parser.add_argument("--json", action="store_true",
                            help="one JSON document on stdout (the API's own shape)")


def pauses(args: argparse.Namespace, settings: Settings) -> int:
    """The three commands, on whichever backend `dagq.cli.backend.backend` picks."""
    from dagq.cli.backend import LocalBackend, backend
    from dagq.cli.views import out, print_json
    from dagq.service import pauses as service

    with backend(settings) as b:
        local = b.repo if isinstance(b, LocalBackend) else None
        client = None if isinstance(b, LocalBackend) else b.client  # type: ignore[attr-defined]
        if args.command == "pauses":
            listed = (local.pauses.list_pauses(None, history=args.history) if local
                      else client.pauses(history=args.history))
            if args.json:
                print_json({"pauses": [p.model_dump(mode="json") for p in listed]})
            else:
                out.print(pauses_table(listed))
            return 0
        name = service.check_pause(args.kind, args.name, getattr(args, "reason", None))
        if args.command == "pause":
            if local:
                made, _ = service.pause(local, None, kind=args.kind, name=name,
                                        reason=args.reason,
                                        refuse_submits=args.refuse_submits)
            else:
                made = client.pause(args.kind, name, reason=args.reason,
                                    refuse_submits=args.refuse_submits)
            if args.json:
                print_json(made.model_dump(mode="json"))
            else:
                print(f"paused {made.kind} {made.name} (pause {made.id}, by {made.created_by})")
            return 0
        if local:
            ended = service.resume(local, None, kind=args.kind, name=name)
        else:  # the API ends a pause by id: find the active one of that kind and name
            found = [p for p in client.pauses() if p.kind == args.kind and p.name == name]
            if not found:
                raise NotFound(f"no active pause {args.kind} {name}")
            ended = client.resume(found[0].id)
        print(f"resumed {ended.kind} {ended.name} (pause {ended.id})")
        return 0


def pauses_table(listed: list[PauseRecord]) -> Table:
    from dagq.cli.views import when

    table = Table(title=f"{len(listed)} pause(s)")
    for column in ("id", "kind", "name", "reason", "refuses submits", "by", "since",
                   "resumed"):
        table.add_column(column, overflow="fold")
    for p in listed:
        table.add_row(str(p.id)[:8], p.kind, p.name, p.reason or "-",
                      "yes" if p.refuse_submits else "no", p.created_by, when(p.created_at),
                      when(p.resumed_at) if p.resumed_at else "-")
    return table
