"""Handlers of the `dagq` subcommands; each calls the same functions as the API."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from dagq import service
from dagq.cli import remote as cli_client
from dagq.cli.args import parse_json_arg, parse_uuid
from dagq.config import Settings
from dagq.runtime.bootstrap import database, repository

log = logging.getLogger("dagq.cli")


def up(args: argparse.Namespace, settings: Settings) -> int:
    """Everything in the foreground. The one command besides `dagq db migrate` that
    creates the embedded database and migrates it (it owns it); on DAGQ_DATABASE_URL
    it only checks the schema, as every other process does."""
    from dagq.runtime import procs
    from dagq.runtime.db import require_embedded_extra
    from dagq.runtime.preflight import ensure_port_free, one_up_per_data_dir
    from dagq.runtime.procs import ProcessGroup, child_env

    started = time.monotonic()
    port = args.port or settings.api_port
    owns_database = not settings.database_url
    if owns_database:
        require_embedded_extra()  # before the lock makes the data directory
    with one_up_per_data_dir(settings.data_dir):  # a second `dagq up` here: one line
        ensure_port_free(settings.api_host, port)  # before anything starts
        with database(settings, migrate=owns_database,
                      on_release=_say_embedded_stopped) as db:
            env = child_env(db.url)
            group = ProcessGroup()
            args.api_processes = args.api_processes or procs.default_api_processes()
            _add_api(group, settings.api_host, port, args.api_processes, env)
            group.add("sweeper", ["-m", "dagq.sweeper"], env)
            for i in range(args.workers):
                group.add(f"worker-{i + 1}", ["-m", "dagq.workers", "--threads",
                                              str(args.threads)], env, reports=True)
            # "dagq is up" once the workers serve: one that cannot start stops it all.
            return group.run(on_up=lambda: _banner(settings, db.url, port, args, db.applied,
                                                   time.monotonic() - started))


def _add_api(group: Any, host: str, port: int, processes: int, env: dict[str, str]) -> None:
    """`processes` API processes on one port; more than one share it with SO_REUSEPORT."""
    argv = ["-m", "dagq.api", "--host", host, "--port", str(port)]
    if processes == 1:
        group.add("api", argv, env)
        return
    for i in range(processes):
        group.add(f"api-{i + 1}", [*argv, "--reuse-port"], env)


def _say_embedded_stopped() -> None:
    print("dagq: embedded Postgres stopped", file=sys.stderr)


def _banner(settings: Settings, url: str, port: int, args: argparse.Namespace,
            applied: list[int], elapsed: float) -> None:
    where = "embedded Postgres (data in " + str(settings.data_dir / "pg") + ")" \
        if not settings.database_url else "Postgres at DAGQ_DATABASE_URL"
    lines = [
        f"dagq is up in {elapsed:.1f}s",
        f"  database   {where}",
        f"             psql \"{url}\"",
        f"  schema     {'applied migrations ' + str(applied) if applied else 'current'}",
        f"  api        http://{settings.api_host}:{port}/  (dashboard; API under /v1)",
        f"             {args.api_processes} process(es)"
        f"{' sharing the port' if args.api_processes > 1 else ''} "
        f"(--api-processes; default 1 per 2 cores)",
        f"  workers    {args.workers} process(es) x {args.threads} threads",
        f"  sweeper    every {settings.sweep_interval_s:g}s",
        "  stop       Ctrl-C (or SIGTERM) stops everything cleanly",
    ]
    if settings.auth == "off":
        lines.insert(1, "  WARNING    DAGQ_AUTH=off: the API accepts requests WITHOUT a key. "
                        "Local development only!")
    print("\n".join(lines), file=sys.stderr, flush=True)


def db(args: argparse.Namespace, settings: Settings) -> int:
    if args.db_command == "status":
        return db_status(settings)
    with database(settings, migrate=True) as migrated:
        applied = migrated.applied
    print(f"applied migrations {applied}" if applied else "schema is current")
    return 0


def db_status(settings: Settings) -> int:
    """`dagq db status`: the applied and pending migrations, and whether this dagq may
    run on the schema (exit 0 if it may, 1 if not); changes nothing."""
    from dagq.cli.views import schema_status
    from dagq.runtime.migrate import read_schema_state

    with database(settings, check=False) as found:
        state = read_schema_state(found.url)
    schema_status(state)
    return 0 if state.compatible else 1


def api(args: argparse.Namespace, settings: Settings) -> int:
    from dagq.api.server import serve
    from dagq.runtime.preflight import ensure_port_free
    from dagq.runtime.procs import ProcessGroup, child_env

    host, port = args.host or settings.api_host, args.port or settings.api_port
    ensure_port_free(host, port)  # one line, not a traceback or endless restarts
    with database(settings) as checked:
        if args.processes == 1:
            return serve(settings, checked.url, host=host, port=port)
        group = ProcessGroup()
        _add_api(group, host, port, args.processes, child_env(checked.url))
        print(f"dagq: API on http://{host}:{port}/ in {args.processes} processes sharing "
              "the port", file=sys.stderr, flush=True)
        return group.run()


def worker(args: argparse.Namespace, settings: Settings) -> int:
    from dagq.runtime.procs import ProcessGroup, child_env

    with database(settings) as checked:
        group = ProcessGroup()
        argv = ["-m", "dagq.workers", "--threads", str(args.threads), "--queues", args.queues]
        for i in range(args.processes):
            group.add(f"worker-{i + 1}", argv, child_env(checked.url), reports=True)
        # A worker that cannot start (an actor module that does not import) stops it all.
        return group.run(on_up=lambda: log.info("%d worker process(es) serving",
                                                args.processes))


def sweeper(args: argparse.Namespace, settings: Settings) -> int:
    from dagq.runtime.procs import stop_on_signals
    from dagq.sweeper.passes import exit_status, run_sweeper

    stop = stop_on_signals()
    with database(settings) as checked:
        clean = run_sweeper(settings, checked.url, stop)
    return exit_status(clean)


def keys(args: argparse.Namespace, settings: Settings) -> int:
    with repository(settings) as repo:
        key = service.create_api_key(repo, args.tenant, admin=args.admin)
    kind = "admin key" if args.admin else "key"
    print(f"created {kind} for tenant {args.tenant!r}; it is shown only once:")
    print(key)
    return 0


def submit(args: argparse.Namespace, settings: Settings) -> int:
    from dagq.cli.views import follow_run

    if (remote := cli_client.configured()) is not None:  # DAGQ_URL: through the API
        return cli_client.submit(args, remote)
    inputs = parse_json_arg(args.inputs, "--inputs")
    workflow = args.workflow
    if workflow.endswith((".json", ".yaml", ".yml")):
        workflow = service.load_spec_file(workflow)
    with repository(settings) as repo:
        result = service.submit(
            repo, tenant=args.tenant, workflow=workflow, version=args.workflow_version,
            inputs=inputs, event_key=args.event_key, priority=args.priority,
        )
        verb = "submitted" if result.created else "already submitted (same event key)"
        print(f"{verb}: run {result.run_id}", file=sys.stderr)
        if not args.wait:
            print(result.run_id)
            return 0
        status = follow_run(repo, result.run_id)
    print(result.run_id)
    return 0 if status == "succeeded" else 1


def runs(args: argparse.Namespace, settings: Settings) -> int:
    from dagq.cli.views import runs_table

    if (remote := cli_client.configured()) is not None:  # DAGQ_URL: through the API
        return cli_client.runs(args, remote)
    with repository(settings) as repo:
        found = repo.runs.list_runs(tenant=None, status=args.status, workflow=args.workflow,
                                    limit=args.limit)
    runs_table(found)
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    from dagq.cli.views import rerun_made, run_detail

    if (remote := cli_client.configured()) is not None:  # DAGQ_URL: through the API
        if args.run_command == "follow":
            return cli_client.run_follow(args, remote)
        if args.run_command == "rerun":
            return cli_client.run_rerun(args, remote)
        return cli_client.run_show(args, remote)
    run_id = parse_uuid(args.run_id, "run")
    with repository(settings) as repo:
        if args.run_command == "rerun":
            result = repo.reruns.rerun_run(run_id, None, from_=args.from_,
                                           outputs=parse_json_arg(args.outputs, "--outputs"),
                                           inputs=parse_json_arg(args.inputs, "--inputs"))
            return rerun_made(result)
        if args.run_command == "follow":
            from dagq.cli.follow import FeedPrinter, follow_database

            return 0 if follow_database(repo, run_id, FeedPrinter()) == "succeeded" else 1
        run_detail(service.get_run(repo, run_id))
    return 0


def signal(args: argparse.Namespace, settings: Settings) -> int:
    """`dagq signal RUN_ID NAME [--data JSON]`: prints the signal id (stdout) and what
    became of it (stderr)."""
    from dagq.cli.views import signal_sent

    if (remote := cli_client.configured()) is not None:  # DAGQ_URL: through the API
        return cli_client.signal(args, remote)
    run_id = parse_uuid(args.run_id, "run")
    data = parse_json_arg(args.data, "--data")
    with repository(settings) as repo:
        signal_sent(service.send_signal(
            repo, run_id, args.name, tenant=None, data=data, signal_id=args.signal_id,
            max_buffered=settings.max_buffered_signals_per_run))
    return 0


def bench(args: argparse.Namespace, settings: Settings) -> int:
    from dagq.bench.run import run_bench

    return run_bench(args, settings)


def schedules(args: argparse.Namespace, settings: Settings) -> int:
    from dagq import service
    from dagq.cli.views import schedules_table

    with repository(settings) as repo:
        if args.schedules_command == "create":
            workflow = args.workflow
            if workflow.endswith((".json", ".yaml", ".yml")):
                workflow = service.load_spec_file(workflow)
            created = service.create_schedule(
                repo, tenant=args.tenant, workflow=workflow, cron=args.cron,
                inputs=parse_json_arg(args.inputs, "--inputs"), timezone=args.timezone)
            print(created.schedule_id)
        elif args.schedules_command == "list":
            schedules_table(repo.schedules.list_schedules(None))
        else:
            repo.schedules.delete_schedule(parse_uuid(args.schedule_id, "schedule"), None)
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
