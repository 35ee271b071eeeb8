"""`python -m dagq.workers`: one worker process (what `dagq worker` starts N of)."""

from __future__ import annotations

import argparse
import logging
import sys

from dagq.runtime import tracing
from dagq.runtime.bootstrap import process_database, process_settings
from dagq.runtime.procs import (
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
    take_status_fd()  # `dagq up`/`dagq worker` hear from us over it (dagq.runtime.procs)
    parser = argparse.ArgumentParser(prog="python -m dagq.workers")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--queues", default="")
    args = parser.parse_args(argv)
    settings = process_settings()
    tracing.name_process("worker")  # the spans' default service.name (OTEL_SERVICE_NAME wins)
    queues = [q for q in args.queues.split(",") if q] or None
    with process_database(settings, _cannot_start) as db:
        if db is None:
            return EXIT_CANNOT_START
        return run_worker(settings, db.url, threads=args.threads, queues=queues, stop=stop)


def _cannot_start(why: str) -> None:
    """Tell `dagq up`/`dagq worker` (they say it), or say it ourselves."""
    if not tell_parent(CANNOT_START, why):
        log.error("worker cannot start: %s", why)

if __name__ == "__main__":
    sys.exit(main())
