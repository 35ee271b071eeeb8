"""Handlers of the `dagq` commands that read and change runs, schedules, tenants and keys.

The run commands (submit, runs, run show/follow/rerun, signal) are written once: they
check their arguments (dagq.cli.parser, dagq.service), then call `backend()`, which is
the database or, with DAGQ_URL set, the HTTP API. keys, schedules and tenants use the
database only, whatever DAGQ_URL says. Every change goes through dagq.service.
"""

from __future__ import annotations

import argparse
import json
import sys

from dagq import service
from dagq.cli.backend import backend, repository
from dagq.cli.parser import (
    check_run_filter,
    parse_json_arg,
    parse_uuid,
    workflow_arg,
    workflow_file,
)
from dagq.config import Settings


def submit(args: argparse.Namespace, settings: Settings) -> int:
    from dagq.cli.views import follow_run

    inputs = parse_json_arg(args.inputs, "--inputs")
    workflow = workflow_arg(args.workflow)
    service.check_request(service.SubmitRequest(
        tenant=args.tenant, workflow=workflow, version=args.workflow_version, inputs=inputs,
        event_key=args.event_key, priority=args.priority))
    with backend(settings) as b:
        result = b.submit(workflow, inputs, event_key=args.event_key, priority=args.priority,
                          version=args.workflow_version, tenant=args.tenant)
        verb = "submitted" if result.created else "already submitted (same event key)"
        print(f"{verb}: run {result.run_id}", file=sys.stderr)
        if not args.wait:
            print(result.run_id)
            return 0
        status = follow_run(b.progress(result.run_id))
    print(result.run_id)
    return 0 if status == "succeeded" else 1


def runs(args: argparse.Namespace, settings: Settings) -> int:
    from dagq.cli.views import runs_table

    check_run_filter(args.status, args.workflow)
    with backend(settings) as b:
        found = b.runs(args.status, args.workflow, args.limit)
    runs_table(found)
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    """`dagq run show|follow|rerun RUN_ID`."""
    from dagq.cli.views import rerun_made, run_detail

    run_id = parse_uuid(args.run_id, "run")
    if args.run_command == "rerun":
        outputs = parse_json_arg(args.outputs, "--outputs")
        inputs = parse_json_arg(args.inputs, "--inputs")
        service.check_rerun(args.from_, outputs, inputs)
        with backend(settings) as b:
            result = b.rerun(run_id, args.from_, outputs, inputs)
        return rerun_made(result)
    with backend(settings) as b:
        if args.run_command == "follow":
            from dagq.cli.follow import FeedPrinter, follow

            return 0 if follow(b, run_id, FeedPrinter()) == "succeeded" else 1
        found = b.run(run_id)
    run_detail(found)
    return 0


def signal(args: argparse.Namespace, settings: Settings) -> int:
    """`dagq signal RUN_ID NAME [--data JSON]`: prints the signal id (stdout) and what
    became of it (stderr)."""
    from dagq.cli.views import signal_sent

    run_id = parse_uuid(args.run_id, "run")
    data = parse_json_arg(args.data, "--data")
    service.check_signal(args.name, data, args.signal_id)
    with backend(settings) as b:
        result = b.signal(run_id, args.name, data, args.signal_id)
    signal_sent(result)
    return 0


def keys(args: argparse.Namespace, settings: Settings) -> int:
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
                timezone=args.timezone)
            print(created.schedule_id)
        elif args.schedules_command == "list":
            schedules_table(repo.schedules.list_schedules(None))
        else:
            service.delete_schedule(repo, parse_uuid(args.schedule_id, "schedule"), None)
            print(f"deleted schedule {args.schedule_id}")
    return 0


def tenants(args: argparse.Namespace, settings: Settings) -> int:
    from dagq.cli.views import tenants_table

    with repository(settings) as repo:
        if args.tenants_command == "set":
            record = service.set_tenant(
                repo, args.name, weight=args.weight, max_queued_runs=args.max_queued_runs,
                max_running_nodes=args.max_running_nodes,
                submit_rate=service.parse_rate(args.submit_rate))
            print(f"tenant {record.name!r}: weight {record.weight:g}, max queued runs "
                  f"{_limit(record.max_queued_runs)}, max running nodes "
                  f"{_limit(record.max_running_nodes)}, submit rate "
                  f"{_limit(record.submit_rate, '/s')}")
            return 0
        listed = repo.tenants.list_tenants()
    if args.json:
        print(json.dumps([t.model_dump(mode="json") for t in listed], indent=2))
    else:
        tenants_table(listed)
    return 0


def _limit(value: float | None, unit: str = "") -> str:
    return "none" if value is None else f"{value:g}{unit}"
