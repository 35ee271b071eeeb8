"""`python -m dagq.workers`: one worker process (what `dagq worker` starts N of)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys

from dagq.bootstrap import database
from dagq.config import get_settings
from dagq.errors import NoDatabase
from dagq.logs import setup_logging
from dagq.migrate import SchemaMismatch
from dagq.procs import (
    CANNOT_START,
    EXIT_CANNOT_START,
    stop_on_signals,
    take_status_fd,
    tell_parent,
)
from dagq.workers.process import run_worker

log = logging.getLogger("dagq.worker")


def main(argv: list[str] | None = None) -> int:
    stop = stop_on_signals()  # first: a signal during startup stops the worker cleanly
    take_status_fd()  # `dagq up`/`dagq worker` hear from us over it (dagq.procs)
    parser = argparse.ArgumentParser(prog="python -m dagq.workers")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--queues", default="")
    args = parser.parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level)
    queues = [q for q in args.queues.split(",") if q] or None
    with contextlib.ExitStack() as stack:
        try:  # the database exists, and its schema fits this code
            db = stack.enter_context(database(settings))
        except (NoDatabase, SchemaMismatch) as exc:  # configuration: not transient
            if not tell_parent(CANNOT_START, exc.message):
                log.error("worker cannot start: %s", exc.message)
            return EXIT_CANNOT_START
        return run_worker(settings, db.url, threads=args.threads, queues=queues, stop=stop)


if __name__ == "__main__":
    sys.exit(main())
