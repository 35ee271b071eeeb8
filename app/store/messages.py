"""Plain Dramatiq messages: what `PostgresBroker.join`/`flush` ask of a queue, and the
rows of `dagq.PostgresResultBackend` and `dagq.PostgresRateLimiterBackend`."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from dagq.runtime.sqlfiles import queries
from dagq.store.core import StoreCore, notify_after_commit, transient

RESULTS_CHANNEL = "dagq_results"  # payload: the result's key
COUNTERS_CHANNEL = "dagq_counters"  # payload: the counter's key (wait_notify)
BIG = 2**62
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

    # -- counters (dagq.PostgresRateLimiterBackend) ------------------------------------

    @transient
    def counter_add(self, key: str, value: int, ttl_ms: int) -> bool:
        """Set `key` unless it holds a live value."""
        with self._tx(one_statement=True) as cur:
            return cur.execute(queries()["counter_add"], {
                "key": key, "value": value, "ttl_ms": ttl_ms}).fetchone() is not None

    @transient
    def counter_change(self, key: str, delta: int, ttl_ms: int, *, minimum: int = -BIG,
                       maximum: int = BIG, notify: bool = False) -> bool:
        """Add `delta` if the value stays within [minimum, maximum]; `notify`: wake the
        waiters on `key` after commit."""
        with self._tx() as cur:
            cur.execute(queries()["counter_ensure"], {"key": key})
            changed = cur.execute(queries()["counter_change"], {
                "key": key, "delta": delta, "ttl_ms": ttl_ms, "minimum": minimum,
                "maximum": maximum}).fetchone() is not None
            if notify:
                notify_after_commit(COUNTERS_CHANNEL, key)
        return changed

    @transient
    def counter_incr_and_sum(self, key: str, others: list[str], amount: int, maximum: int,
                             ttl_ms: int) -> bool:
        """Add `amount` to `key` if it and the sum of `others` (plus `amount`) stay at
        most `maximum`; checked and written under one fleet-wide lock."""
        q = queries()
        with self._tx() as cur:
            cur.execute(q["counters_lock"])
            row = cur.execute(q["counters_sum"], {"keys": others}).fetchone()
            if (row["total"] if row else 0) + amount > maximum:
                return False
            cur.execute(q["counter_ensure"], {"key": key})
            return cur.execute(q["counter_change"], {
                "key": key, "delta": amount, "ttl_ms": ttl_ms, "minimum": -BIG,
                "maximum": maximum}).fetchone() is not None

    @transient
    def counter_value(self, key: str) -> int | None:
        with self._tx(one_statement=True) as cur:
            row = cur.execute(queries()["counter_value"], {"key": key}).fetchone()
        return None if row is None else int(row["value"])
