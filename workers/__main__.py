"""`python -m dagq.workers`: one worker process (what `dagq worker` starts N of)."""

from __future__ import annotations

import argparse
import sys

from dagq.bootstrap import database
from dagq.config import get_settings
from dagq.logs import setup_logging
from dagq.procs import stop_on_signals
from dagq.workers.process import run_worker


def main(argv: list[str] | None = None) -> int:
    stop = stop_on_signals()  # first: a signal during startup stops the worker cleanly
    parser = argparse.ArgumentParser(prog="python -m dagq.workers")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--queues", default="")
    args = parser.parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level)
    queues = [q for q in args.queues.split(",") if q] or None
    with database(settings, migrate=False) as db:  # `dagq up`/`dagq worker` migrated
        return run_worker(settings, db.url, threads=args.threads, queues=queues, stop=stop)


if __name__ == "__main__":
    sys.exit(main())
