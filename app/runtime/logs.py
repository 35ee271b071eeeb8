"""Logging set-up shared by every dagq process."""

from __future__ import annotations

import faulthandler
import logging
import signal


def setup_logging(level: str | None, default: str = "INFO") -> None:
    """Log at `level` (Settings.log_level), or `default` when it is unset."""
    level = level or default
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )
    # Dramatiq logs every consumer restart at INFO; keep its chatter at WARNING.
    logging.getLogger("dramatiq").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    logging.getLogger("psycopg.pool").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    # `kill -USR2 <pid>` prints every thread's stack to stderr: how an operator (or a
    # test) sees where a dagq process that does not stop is stuck.
    faulthandler.register(signal.SIGUSR2, all_threads=True)
