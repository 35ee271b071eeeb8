"""Plain Dramatiq messages: what `PostgresBroker.join`/`flush` ask of a queue, and the
rows of `dagq.PostgresResultBackend`."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from dagq.sqlfiles import queries
from dagq.store.core import StoreCore, notify_after_commit, transient

RESULTS_CHANNEL = "dagq_results"  # payload: the result's key
PRUNE_BATCH = 1000


class MessageStore(StoreCore):
    """Queue-level questions of the Dramatiq broker and the result backend's rows."""

    @transient
    def queue_unfinished(self, queue: str) -> int:
        """Node tasks of `queue` queued (delayed included) or running."""
        with self._tx(one_statement=True) as cur:
            row = cur.execute(queries()["queue_unfinished"], {"queue": queue}).fetchone()
        return int(row["n"]) if row else 0

    @transient
    def queued_message_runs(self, queue: str) -> list[uuid.UUID]:
        """The one-node runs of plain Dramatiq messages waiting in `queue`."""
        with self._tx(one_statement=True) as cur:
            rows = cur.execute(queries()["queued_message_runs"], {"queue": queue}).fetchall()
        return [row["run_id"] for row in rows]

    @transient
    def first_failure_since(self, queue: str, since: dt.datetime) -> dict[str, Any] | None:
        """The first node of `queue` that failed for good at or after `since`."""
        with self._tx(one_statement=True) as cur:
            return cur.execute(queries()["first_failure_since"],
                               {"queue": queue, "since": since}).fetchone()

    @transient
    def database_now(self) -> dt.datetime:
        """The database's clock (the one finished_at is written with)."""
        with self._tx(one_statement=True) as cur:
            row = cur.execute(queries()["database_now"]).fetchone()
        assert row is not None
        return row["now"]  # type: ignore[no-any-return]

    @transient
    def store_result(self, key: str, value: bytes, ttl_ms: int) -> None:
        """Keep a result for `ttl_ms`; blocked readers are woken after commit."""
        with self._tx() as cur:
            cur.execute(queries()["store_result"], {"key": key, "value": value,
                                                   "ttl_ms": ttl_ms})
            notify_after_commit(RESULTS_CHANNEL, key)

    @transient
    def get_result(self, key: str) -> bytes | None:
        with self._tx(one_statement=True) as cur:
            row = cur.execute(queries()["get_result"], {"key": key}).fetchone()
        return None if row is None else bytes(row["value"])

    @transient
    def prune_results(self, limit: int = PRUNE_BATCH) -> int:
        """Delete up to `limit` expired results; how many were."""
        with self._tx(one_statement=True) as cur:
            return cur.execute(queries()["prune_results"], {"limit": limit}).rowcount
