"""Plain Dramatiq messages: what `PostgresBroker.join`/`flush` ask of a queue, the rows
of `dagq.PostgresResultBackend` and `dagq.PostgresRateLimiterBackend`, and messages for
an actor no live worker serves (issue 19): what a worker warns about, and what the
sweeper dead-letters after DAGQ_DEAD_LETTER_AFTER_S.

A message's node is "served" while a live worker lists both its queue and its actor
(`dagq.workers.queues` / `.executors`: `dagq worker` and a `PostgresBroker(url=...)`
under the `dramatiq` CLI list their plain actors there beside their executors). One
queued longer than the bound, whose actor no worker has served for that long either
(none live, none with a heartbeat in that time: a restart's gap does not count), fails
for good: `node_failed` with error type `DeadLettered`, its run failed like any
one-node run whose node failed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from dagq.runtime.sqlfiles import queries
from dagq.store.machine import Machine
from dagq.store.machine.unit import UnitOfWork, error_data
from dagq.store.tx import Database, notify_after_commit, transient

RESULTS_CHANNEL = "dagq_results"  # payload: the result's key
COUNTERS_CHANNEL = "dagq_counters"  # payload: the counter's key (wait_notify)
BIG = 2**62
PRUNE_BATCH = 1000
DEAD_LETTERED = "DeadLettered"


class MessageRepo:
    """Queue-level questions of the Dramatiq broker, the result backend's and the rate
    limiter's rows, and dead letters."""

    def __init__(self, db: Database, machine: Machine) -> None:
        self.db, self.m = db, machine

    @transient
    def queue_unfinished(self, queue: str) -> int:
        """Node tasks of `queue` queued (delayed included) or running."""
        with self.db.tx(one_statement=True) as cur:
            row = cur.execute(queries()["queue_unfinished"], {"queue": queue}).fetchone()
        return int(row["n"]) if row else 0

    @transient
    def queued_message_runs(self, queue: str) -> list[uuid.UUID]:
        """The one-node runs of plain Dramatiq messages waiting in `queue`."""
        with self.db.tx(one_statement=True) as cur:
            rows = cur.execute(queries()["queued_message_runs"], {"queue": queue}).fetchall()
        return [row["run_id"] for row in rows]

    @transient
    def first_failure_since(self, queue: str, since: dt.datetime) -> dict[str, Any] | None:
        """The first node of `queue` that failed for good at or after `since`."""
        with self.db.tx(one_statement=True) as cur:
            return cur.execute(queries()["first_failure_since"],
                               {"queue": queue, "since": since}).fetchone()

    @transient
    def database_now(self) -> dt.datetime:
        """The database's clock (the one finished_at is written with)."""
        with self.db.tx(one_statement=True) as cur:
            row = cur.execute(queries()["database_now"]).fetchone()
        assert row is not None
        return row["now"]  # type: ignore[no-any-return]

    @transient
    def store_result(self, key: str, value: bytes, ttl_ms: int) -> None:
        """Keep a result for `ttl_ms`; blocked readers are woken after commit."""
        with self.db.tx() as cur:
            cur.execute(queries()["store_result"], {"key": key, "value": value,
                                                   "ttl_ms": ttl_ms})
            notify_after_commit(RESULTS_CHANNEL, key)

    @transient
    def get_result(self, key: str) -> bytes | None:
        with self.db.tx(one_statement=True) as cur:
            row = cur.execute(queries()["get_result"], {"key": key}).fetchone()
        return None if row is None else bytes(row["value"])

    @transient
    def prune_results(self, limit: int = PRUNE_BATCH) -> int:
        """Delete up to `limit` expired results; how many were."""
        with self.db.tx(one_statement=True) as cur:
            return cur.execute(queries()["prune_results"], {"limit": limit}).rowcount

    # -- counters (dagq.PostgresRateLimiterBackend) ------------------------------------

    @transient
    def counter_add(self, key: str, value: int, ttl_ms: int) -> bool:
        """Set `key` unless it holds a live value."""
        with self.db.tx(one_statement=True) as cur:
            return cur.execute(queries()["counter_add"], {
                "key": key, "value": value, "ttl_ms": ttl_ms}).fetchone() is not None

    @transient
    def counter_change(self, key: str, delta: int, ttl_ms: int, *, minimum: int = -BIG,
                       maximum: int = BIG, notify: bool = False) -> bool:
        """Add `delta` if the value stays within [minimum, maximum]; `notify`: wake the
        waiters on `key` after commit."""
        with self.db.tx() as cur:
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
        with self.db.tx() as cur:
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
        with self.db.tx(one_statement=True) as cur:
            row = cur.execute(queries()["counter_value"], {"key": key}).fetchone()
        return None if row is None else int(row["value"])

    # -- dead letters (plain messages no live worker serves) ---------------------------

    @transient
    def unserved_actors(self, *, queues: list[str], served: list[str]) -> list[dict[str, Any]]:
        """Actors (not in `served`) of messages queued in `queues` that no live worker
        serves: {actor, queue, waiting, since}."""
        with self.db.tx(one_statement=True) as cur:
            return cur.execute(queries()["unserved_actors"], {
                "queues": queues, "served": served}).fetchall()

    def dead_letter_unserved(self, *, after_s: float, now: dt.datetime | None = None,
                             limit: int = 100) -> dict[str, int]:
        """Fail the messages queued longer than `after_s` that no live worker serves:
        one read, then a short transaction each that skips what another transaction
        holds (`skipped`: the next pass takes it)."""
        counts = {"dead_lettered": 0, "skipped": 0, "candidates": 0}
        candidates = self._dead_letter_candidates(after_s, now, limit)
        counts["candidates"] = len(candidates)
        for node_id in candidates:
            outcome = self._dead_letter_one(node_id, after_s, now)
            if outcome == "busy":
                counts["skipped"] += 1
            elif outcome == "failed":
                counts["dead_lettered"] += 1
        return counts

    @transient
    def _dead_letter_candidates(self, after_s: float, now: dt.datetime | None,
                                limit: int) -> list[int]:
        with self.db.tx(one_statement=True) as cur:
            return [r["id"] for r in cur.execute(queries()["dead_letter_candidates"], {
                "after_s": after_s, "now": now, "limit": limit}).fetchall()]

    @transient
    def _dead_letter_one(self, node_id: int, after_s: float,
                         now: dt.datetime | None = None) -> str:
        q = queries()
        with self.db.tx() as cur:
            node = cur.execute(q["lock_dead_letter"], {
                "id": node_id, "after_s": after_s, "now": now}).fetchone()
            if node is None:
                return "busy"  # locked by another transaction, or no longer queued
            if cur.execute(q["try_lock_run"], {"run_id": node["run_id"]}).fetchone() is None:
                return "busy"
            return self._dead_letter(cur, node, after_s)

    def _dead_letter(self, cur: psycopg.Cursor[Any], node: dict[str, Any],
                     after_s: float) -> str:
        error = {"type": DEAD_LETTERED, "message": (
            f"no worker serves actor {node['executor']!r} on queue {node['queue']!r}: "
            f"dead-lettered after {after_s:g}s queued (DAGQ_DEAD_LETTER_AFTER_S)")}
        row = cur.execute(queries()["dead_letter_node"], {
            "id": node["id"], "version": node["version"], "error": Jsonb(error)}).fetchone()
        if row is None:
            return "stale"
        work = UnitOfWork()
        work.touch(row["run_id"])
        work.event(row["run_id"], row["node_key"], "node_failed", row["attempts"],
                   {**error_data(error), "dead_lettered": True})
        self.m.release.node_failed(cur, work, row, error, node["fail_fast"])
        self.m.accounting.account_runs(cur, work)
        work.flush(cur)
        return "failed"
