"""`python -m dagq.sweeper` (what `dagq sweeper` and `dagq up` start)."""

from __future__ import annotations

import logging

from dagq.runtime.procs import EXIT_CANNOT_START, stop_on_signals
from dagq.sweeper.passes import exit_status, run_sweeper

log = logging.getLogger("dagq.sweeper")


def main() -> int:
    from dagq.runtime.bootstrap import process_database, process_settings

    stop = stop_on_signals()  # first thing: a signal during startup is not lost
    settings = process_settings()
    with process_database(
            settings, lambda why: log.error("the sweeper cannot start: %s", why)) as db:
        if db is None:
            return EXIT_CANNOT_START
        clean = run_sweeper(settings, db.url, stop)
    return exit_status(clean)


if __name__ == "__main__":
    raise SystemExit(main())
