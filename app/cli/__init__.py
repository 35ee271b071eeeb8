"""The `dagq` command (docs/cli.md; the entry point is dagq.cli:main). Errors are one line
on stderr and a non-zero exit: 2 for bad input (usage, workflow files, JSON), 1 for
everything else."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import psycopg

from dagq.cli.parser import EXIT_INPUT, build_parser
from dagq.config import Settings, describe_invalid, get_settings
from dagq.errors import DagqError, InvalidRequest, InvalidWorkflow, NoDatabase

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    from dagq.runtime.logs import setup_logging

    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValueError as exc:
        print(f"dagq: error: invalid configuration: {describe_invalid(exc)}", file=sys.stderr)
        return EXIT_INPUT
    server = args.command in ("up", "worker", "api", "sweeper", "bench")
    setup_logging(settings.log_level, "INFO" if server else "WARNING", fmt=settings.log_format)
    try:
        return _dispatch(args, settings)
    except (InvalidWorkflow, InvalidRequest, NoDatabase) as exc:
        print(f"dagq: error: {exc.message}", file=sys.stderr)
        return EXIT_INPUT
    except DagqError as exc:
        print(f"dagq: error: {exc.message}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:  # e.g. a DAGQ_DATABASE_URL that points nowhere
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        print(f"dagq: error: database: {first_line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from dagq.cli import commands, emit, pauses, processes, webhooks

    handlers: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
        "up": processes.up, "db": processes.db, "api": processes.api,
        "worker": processes.worker, "sweeper": processes.sweeper, "bench": processes.bench,
        "keys": commands.keys, "submit": commands.submit, "runs": commands.runs,
        "run": commands.run, "schedules": commands.schedules, "tenants": commands.tenants,
        "signal": commands.signal, "workflows": commands.workflows,
        "webhooks": webhooks.webhooks, "emit": emit.emit,
        "pause": pauses.pauses, "resume": pauses.pauses, "pauses": pauses.pauses,
    }
    return handlers[args.command](args, settings)
