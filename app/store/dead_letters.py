"""Plain Dramatiq messages for an actor no live worker serves (issue 19): what a worker
warns about, and what the sweeper dead-letters after DAGQ_DEAD_LETTER_AFTER_S.

A message's node is "served" while a live worker lists both its queue and its actor
(`dagq.workers.queues` / `.executors`: `dagq worker` and a `PostgresBroker(url=...)`
under the `dramatiq` CLI list their plain actors there beside their executors). One
queued longer than the bound, whose actor no worker has served for that long either
(none live, none with a heartbeat in that time: a restart's gap does not count), fails
for good: `node_failed` with error type `DeadLettered`, its run failed like any
one-node run whose node failed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from dagq.runtime.sqlfiles import queries
from dagq.store.accounting import error_data
from dagq.store.core import transient
from dagq.store.transitions import Transitions
from dagq.store.work import UnitOfWork

DEAD_LETTERED = "DeadLettered"


class DeadLetterStore(Transitions):
    @transient
    def unserved_actors(self, *, queues: list[str], served: list[str]) -> list[dict[str, Any]]:
        """Actors (not in `served`) of messages queued in `queues` that no live worker
        serves: {actor, queue, waiting, since}."""
        with self._tx(one_statement=True) as cur:
            return cur.execute(queries()["unserved_actors"], {
                "queues": queues, "served": served}).fetchall()

    def dead_letter_unserved(self, *, after_s: float, now: datetime | None = None,
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
    def _dead_letter_candidates(self, after_s: float, now: datetime | None,
                                limit: int) -> list[int]:
        with self._tx(one_statement=True) as cur:
            return [r["id"] for r in cur.execute(queries()["dead_letter_candidates"], {
                "after_s": after_s, "now": now, "limit": limit}).fetchall()]

    @transient
    def _dead_letter_one(self, node_id: int, after_s: float,
                         now: datetime | None = None) -> str:
        q = queries()
        with self._tx() as cur:
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
        self._node_failed(cur, work, row, error, node["fail_fast"])
        self._account_runs(cur, work)
        work.flush(cur)
        return "failed"
