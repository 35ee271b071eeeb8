"""The `dagq` commands that start processes or manage the schema: up, api, worker,
sweeper, db, bench. They use the database only (DAGQ_URL does not apply)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from typing import Any

from dagq.config import Settings
from dagq.runtime.bootstrap import database
from dagq.runtime.budget import Budget
from dagq.runtime.logs import say

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
            args.connections = connections(settings, db.url, Budget(
                api=args.api_processes, workers=args.workers, sweepers=1,
                threads=args.threads))
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
    from dagq.runtime.procs import api_commands

    for name, argv in api_commands(host, port, processes):
        group.add(name, argv, env)


def connections(settings: Settings, url: str, budget: Budget) -> list[str]:
    """The connection budget, then (through a transaction pooler) the LISTEN probe's
    warning: each one line."""
    from dagq.runtime.listening import listen_warning

    warning = listen_warning(url, settings)
    if warning is None:
        return [budget.line(settings)]
    return [dataclasses.replace(budget, listening=False).line(settings), warning]


def _say_embedded_stopped() -> None:
    say("dagq: embedded Postgres stopped")


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
        *(f"  {'WARNING ' if i else 'budget  '}   {line}"
          for i, line in enumerate(args.connections)),
        "  stop       Ctrl-C (or SIGTERM) stops everything cleanly",
    ]
    if settings.auth == "off":
        lines.insert(1, "  WARNING    DAGQ_AUTH=off: the API accepts requests WITHOUT a key. "
                        "Local development only!")
    say("\n".join(lines))


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
        for line in connections(settings, checked.url, Budget(api=args.processes)):
            say(f"dagq: {line}")
        if args.processes == 1:
            return serve(settings, checked.url, host=host, port=port)
        group = ProcessGroup()
        _add_api(group, host, port, args.processes, child_env(checked.url))
        say(f"dagq: API on http://{host}:{port}/ in {args.processes} processes sharing "
            "the port")
        return group.run()


def worker(args: argparse.Namespace, settings: Settings) -> int:
    from dagq.runtime.procs import ProcessGroup, child_env

    with database(settings) as checked:
        for line in connections(settings, checked.url,
                                Budget(workers=args.processes, threads=args.threads)):
            say(f"dagq: {line}")
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


def bench(args: argparse.Namespace, settings: Settings) -> int:
    from dagq.bench.run import run_bench

    return run_bench(args, settings)
