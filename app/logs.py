"""Logging set-up shared by every dagq process."""

from __future__ import annotations

import logging
import os


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
