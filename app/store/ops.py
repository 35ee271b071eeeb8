"""What operators read: queue statistics, readiness, metrics' gauges, the event tail."""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg

from dagq.errors import DatabaseUnavailable
from dagq.runtime.db import DatabaseTimeout
from dagq.runtime.sqlfiles import queries
from dagq.store.tx import Database, transient

log = logging.getLogger("dagq.store")


class OpsRepo:
    """Queue statistics, readiness and metrics."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @transient
    def queue_stats(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Per queue: queued (ready), delayed, running, oldest_queued_age_s and
        failed_last_hour, ordered by queue name; counting only `tenant`'s nodes if given
        (the same queues either way)."""
        with self.db.tx(one_statement=True) as cur:
            return cur.execute(queries()["api_queue_stats"], {"tenant": tenant}).fetchall()

    @transient
    def queue_tenants(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Per queue and tenant with queued or running nodes: queued (ready), delayed,
        running, weight, max_running_nodes; only `tenant`'s if given."""
        with self.db.tx(one_statement=True) as cur:
            return cur.execute(queries()["api_queue_tenants"], {"tenant": tenant}).fetchall()

    def readiness(self, *, timeout_s: float = 2.0) -> tuple[list[int], int | None]:
        """(pending migration versions, live workers) in one pool checkout; the workers
        are not counted (None) while migrations are pending. Not retried: a readiness
        probe must answer fast, so it raises DatabaseUnavailable within `timeout_s`,
        even when the server hangs."""
        from dagq.runtime.migrate import pending_migrations

        try:
            with self.db.connection(time.monotonic() + timeout_s) as conn:
                pending = pending_migrations(conn)  # (its queries prove the database up)
                workers = None if pending else \
                    conn.execute(queries()["live_worker_count"]).fetchone()["workers"]
                conn.rollback()
                return pending, workers
        except DatabaseTimeout as exc:
            raise DatabaseUnavailable(f"the database did not answer within {timeout_s}s"
                                      ) from exc
        except psycopg.Error as exc:
            raise DatabaseUnavailable(f"database unavailable: {exc}") from exc

    @transient
    def metric_gauges(self) -> dict[str, int]:
        """Open runs by status and pending nodes of open runs (cheap: partial indexes)."""
        with self.db.tx() as cur:
            return cur.execute(queries()["api_metric_gauges"]).fetchone()

    @transient
    def last_event_id(self) -> int:
        with self.db.tx() as cur:
            return cur.execute(queries()["api_last_event_id"]).fetchone()["id"]

    @transient
    def event_tail(
        self, *, after: int, limit: int = 10_000, settle_s: float = 2.0
    ) -> list[dict[str, Any]]:
        """Events of every run after the id `after`, oldest first, each with `settled`
        (older than settle_s) and, for finished node attempts, executor and duration_s."""
        with self.db.tx() as cur:
            return cur.execute(queries()["api_event_tail"], {
                "after": after, "limit": limit, "settle_s": float(settle_s),
            }).fetchall()
