"""Handlers of the `dagq` commands that read and change runs, schedules, tenants and keys.

The run commands (submit, runs, run show/follow/rerun/resolve/cancel/retry/events, signal),
`workflows` and `keys list|revoke` are written once: they check their arguments
(dagq.cli.parser, dagq.service), then call `backend()`, which is the database or, with
DAGQ_URL set, the HTTP API. A run id may be a unique prefix (dagq.service.lookup).
`keys create`, schedules and tenants use the database only, whatever DAGQ_URL says.
Every change goes through dagq.service. `--json` prints one JSON document, in the shape
the API answers with.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

from dagq import service
from dagq.cli.backend import backend, repository
from dagq.cli.parser import (
    DEFAULT_RUNS,
    check_run_filter,
    check_workflow_name,
    json_or_file,
    parse_json_arg,
    parse_since,
    parse_uuid,
    workflow_arg,
    workflow_file,
)
from dagq.config import Settings
from dagq.errors import InvalidRequest
from dagq.spec.metadata import check_filters, parse_pairs


def submit(args: argparse.Namespace, settings: Settings) -> int:
    from dagq.cli.views import follow_run

    inputs = parse_json_arg(args.inputs, "--inputs")
    workflow = workflow_arg(args.workflow)
    metadata = parse_pairs(args.meta) or None
    service.check_request(service.SubmitRequest(
        tenant=args.tenant, workflow=workflow, version=args.workflow_version, inputs=inputs,
        event_key=args.event_key, priority=args.priority, metadata=metadata))
    with backend(settings) as b:
        result = b.submit(workflow, inputs, event_key=args.event_key, priority=args.priority,
                          version=args.workflow_version, tenant=args.tenant,
                          metadata=metadata)
        verb = "submitted" if result.created else "already submitted (same event key)"
        print(f"{verb}: run {result.run_id}", file=sys.stderr)
        if not args.wait:
            print(result.run_id)
            return 0
        status = follow_run(b.progress(result.run_id))
    print(result.run_id)
    return 0 if status == "succeeded" else 1


def runs(args: argparse.Namespace, settings: Settings) -> int:
    """`dagq runs [--filters]`: a table (or --json); `dagq runs cancel|retry|rerun
    [--filters]`: the action on every run they find."""
    from dagq.api.schemas import RunSummary
    from dagq.cli.views import print_json, runs_table

    check_run_filter(args.status, args.workflow)
    run_filter = service.RunFilter(
        status=args.status, workflow=args.workflow,
        meta=check_filters(parse_pairs(args.meta), "--meta"),
        created_after=parse_since(args.since, "--since"),
        created_before=parse_since(args.until, "--until"))
    if args.action is not None:
        return _bulk(args, settings, run_filter)
    if args.from_ is not None or args.yes:
        raise InvalidRequest("--from and --yes go with an action (cancel, retry, rerun)")
    with backend(settings) as b:
        found = b.runs(run_filter, args.limit or DEFAULT_RUNS)
    if args.json:  # GET /v1/runs's shape (one page: no next_cursor)
        print_json({"runs": [RunSummary.model_validate(r, from_attributes=True)
                             .model_dump(mode="json") for r in found]})
    else:
        runs_table(found)
    return 0


def _bulk(args: argparse.Namespace, settings: Settings, run_filter: service.RunFilter) -> int:
    """Ask (on a terminal), then call the bulk action page after page, printing totals."""
    from dagq.cli.views import bulk_done, print_json

    service.check_bulk(args.action, limit=service.bulk.MAX_BULK, run_filter=run_filter,
                       ids=None, from_=args.from_)
    if not args.yes:
        _confirm(args.action, run_filter)
    acted, skipped_by, cursor = 0, Counter[str](), None
    left = args.limit
    with backend(settings) as b:
        while left is None or left > 0:
            batch = min(left or service.bulk.MAX_BULK, service.bulk.MAX_BULK)
            outcome = b.bulk(args.action, run_filter, limit=batch, cursor=cursor,
                             from_=args.from_)
            acted += outcome.acted
            skipped_by.update(outcome.skipped_by)
            left = None if left is None else left - outcome.acted - outcome.skipped
            if outcome.next_cursor is None:
                break
            cursor = outcome.next_cursor
    if args.json:
        print_json({"acted": acted, "skipped": sum(skipped_by.values()),
                    "skipped_by": dict(skipped_by)})
    else:
        bulk_done(args.action, acted, dict(skipped_by))
    return 0


def _confirm(action: str, run_filter: service.RunFilter) -> None:
    """A yes on a terminal; without one (or without a terminal) nothing is done."""
    shown = [f"{name}={value}" for name, value in (
        ("status", run_filter.status), ("workflow", run_filter.workflow),
        *(("meta." + k, v) for k, v in run_filter.meta.items()),
        ("since", run_filter.created_after), ("until", run_filter.created_before))
        if value is not None]
    what = " ".join(shown) if shown else "(no filter: every run)"
    if not sys.stdin.isatty():
        raise InvalidRequest(f"refusing to {action} runs matching {what} without --yes "
                             "(stdin is not a terminal)")
    answer = input(f"{action} every run matching {what}? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise InvalidRequest("not confirmed: nothing was done")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """`dagq run show|why|follow|rerun|resolve|cancel|retry|events RUN_ID`."""
    from dagq.cli import views
    from dagq.cli.why import print_why

    ref = service.parse_run_ref(args.run_id)
    if args.run_command == "rerun":
        outputs = parse_json_arg(args.outputs, "--outputs")
        inputs = parse_json_arg(args.inputs, "--inputs")
        service.check_rerun(args.from_, outputs, inputs)
        with backend(settings) as b:
            result = b.rerun(b.resolve(ref), args.from_, outputs, inputs)
        return views.rerun_made(result)
    if args.run_command == "resolve":
        outputs = json_or_file(args.outputs, "--outputs")
        service.check_resolve(args.node_key, outputs)
        with backend(settings) as b:
            result = b.resolve_failed_node(b.resolve(ref), args.node_key, outputs)
        return views.node_resolved(result)
    with backend(settings) as b:
        run_id = b.resolve(ref)
        if args.run_command == "follow":
            from dagq.cli.follow import FeedPrinter, follow

            return 0 if follow(b, run_id, FeedPrinter()) == "succeeded" else 1
        if args.run_command == "cancel":
            return views.run_acted("cancel", run_id, b.cancel(run_id))
        if args.run_command == "retry":
            items = "failed" if args.failed_items else "all"
            return views.run_acted("retry", run_id, b.retry(run_id, items))
        if args.run_command == "events":
            return views.events_list(b.events(run_id, args.after), as_json=args.json)
        found = b.run(run_id)
    if args.run_command == "why":
        return print_why(found, as_json=args.json)
    if args.json:
        views.print_json(found.model_dump(mode="json"))
    else:
        views.run_detail(found, verbose=args.verbose)
    return 0


def workflows(args: argparse.Namespace, settings: Settings) -> int:
    """`dagq workflows list|show`."""
    from dagq.cli import views

    if args.workflows_command == "show":
        check_workflow_name(args.name)
    with backend(settings) as b:
        if args.workflows_command == "list":
            listed = b.workflows()
            if args.json:  # GET /v1/workflows's shape
                views.print_json({"workflows": [w.model_dump(mode="json") for w in listed]})
            else:
                views.workflows_table(listed)
            return 0
        found = b.workflow(args.name, args.workflow_version)
    if args.json:  # GET /v1/workflows/{name}'s shape
        views.print_json(found.model_dump(mode="json"))
    else:
        views.workflow_detail(found)
    return 0


def signal(args: argparse.Namespace, settings: Settings) -> int:
    """`dagq signal RUN_ID NAME [--data JSON]`: prints the signal id (stdout) and what
    became of it (stderr)."""
    from dagq.cli.views import signal_sent

    ref = service.parse_run_ref(args.run_id)
    data = parse_json_arg(args.data, "--data")
    service.check_signal(args.name, data, args.signal_id)
    with backend(settings) as b:
        result = b.signal(b.resolve(ref), args.name, data, args.signal_id)
    signal_sent(result)
    return 0


def keys(args: argparse.Namespace, settings: Settings) -> int:
    """`dagq keys create` (the database only: a key is made where the database is),
    `keys list` and `keys revoke` (either backend)."""
    from dagq.cli import views

    if args.keys_command == "list":
        if args.tenant is not None:
            service.check_tenant_name(args.tenant)
        with backend(settings) as b:
            listed = b.keys(args.tenant)
        if args.json:  # GET /v1/keys's shape
            views.print_json({"keys": [k.model_dump(mode="json") for k in listed]})
        else:
            views.keys_table(listed)
        return 0
    if args.keys_command == "revoke":
        key_id = parse_uuid(args.key_id, "key")
        with backend(settings) as b:
            record = b.revoke_key(key_id)
        print(f"revoked key {record.id} of tenant {record.tenant!r} "
              f"(revoked {views.when(record.revoked_at)} by {record.revoked_by})")
        return 0
    with repository(settings) as repo:
        key = service.create_api_key(repo, args.tenant, admin=args.admin)
    kind = "admin key" if args.admin else "key"
    print(f"created {kind} for tenant {args.tenant!r}; it is shown only once:")
    print(key)
    return 0


def schedules(args: argparse.Namespace, settings: Settings) -> int:
    from dagq.cli.views import schedules_table

    with repository(settings) as repo:
        if args.schedules_command == "create":
            created = service.create_schedule(
                repo, tenant=args.tenant, workflow=workflow_file(args.workflow),
                cron=args.cron, inputs=parse_json_arg(args.inputs, "--inputs"),
                timezone=args.timezone, while_paused=args.while_paused)
            print(created.schedule_id)
        elif args.schedules_command == "list":
            listed = repo.schedules.list_schedules(None)
            if args.json:  # GET /v1/schedules's shape
                print(json.dumps({"schedules": [item.model_dump(mode="json")
                                                for item in listed]}, indent=2))
            else:
                schedules_table(listed)
        else:
            service.delete_schedule(repo, parse_uuid(args.schedule_id, "schedule"), None)
            print(f"deleted schedule {args.schedule_id}")
    return 0


def tenants(args: argparse.Namespace, settings: Settings) -> int:
    from dagq.cli.views import tenants_table

    with repository(settings) as repo:
        if args.tenants_command == "set":
            cost_options(args)  # checked before anything is written
            record = service.set_tenant(
                repo, args.name, weight=args.weight, max_queued_runs=args.max_queued_runs,
                max_running_nodes=args.max_running_nodes,
                submit_rate=service.parse_rate(args.submit_rate))
            print(f"tenant {record.name!r}: weight {record.weight:g}, max queued runs "
                  f"{_limit(record.max_queued_runs)}, max running nodes "
                  f"{_limit(record.max_running_nodes)}, submit rate "
                  f"{_limit(record.submit_rate, '/s')}")
            return tenant_costs_command(repo, args)
        listed = repo.tenants.list_tenants()
    if args.json:
        print(json.dumps([t.model_dump(mode="json") for t in listed], indent=2))
    else:
        tenants_table(listed)
    return 0


def cost_options(args: argparse.Namespace) -> dict[str, Any]:
    """`tenants set`'s --prices and --daily-cost-usd as set_tenant_costs' options (what
    is left out is kept), checked (InvalidRequest)."""
    options: dict[str, Any] = {}
    if args.prices is not None:
        try:
            options["prices"] = service.check_prices(json.loads(args.prices))
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"--prices is not JSON: {exc}") from None
    if args.daily_cost_usd is not None:
        text = args.daily_cost_usd.strip().lower()
        try:
            usd = None if text == "none" else float(text)
        except ValueError:
            raise InvalidRequest("--daily-cost-usd must be a number of USD or 'none'") from None
        options["daily_cost_usd"] = service.check_daily_cost(usd)
    return options


def tenant_costs_command(repo: Any, args: argparse.Namespace) -> int:
    options = cost_options(args)
    if options:
        costs = service.set_tenant_costs(repo, args.name, **options)
        daily = costs["daily_cost_usd"]
        print(f"tenant {args.name!r}: {len(costs['prices'])} priced model(s), daily budget "
              f"{'none' if daily is None else f'{daily:g} USD'}, spent today "
              f"{costs['spent_today_usd']:.6g} USD")
    return 0


def _limit(value: float | None, unit: str = "") -> str:
    return "none" if value is None else f"{value:g}{unit}"
