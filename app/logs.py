"""Logging set-up shared by every dagq process."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal


def setup_logging() -> None:
    level = os.environ.get("DAGQ_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )
    # Dramatiq logs every consumer restart at INFO; keep its chatter at WARNING.
    logging.getLogger("dramatiq").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    logging.getLogger("psycopg.pool").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # `kill -USR2 <pid>` prints every thread's stack to stderr: how an operator (or a
    # test) sees where a dagq process that does not stop is stuck.
    faulthandler.register(signal.SIGUSR2, all_threads=True)
