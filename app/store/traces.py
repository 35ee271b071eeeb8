"""Tracing's reads: what a worker's node-attempt spans need beyond the lease (the run's
traceparent, the tenant, the queue wait, a reclaimed previous attempt). Only a worker
with tracing on calls it (dagq.workers.tracing), once per batch of leases."""

from __future__ import annotations

from typing import Any

from dagq.runtime.sqlfiles import queries
from dagq.store.tx import Database, transient


class TraceRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    @transient
    def attempt_traces(self, node_ids: list[int]) -> dict[int, dict[str, Any]]:
        """By node id: version, attempts, tenant, workflow, traceparent, queue_wait_ms,
        lost_started_at / lost_ended_at / lost_error when the previous attempt was
        reclaimed (its lease expired), and `waits` (a first attempt's wait-node
        dependencies: node_key, status, wait, started_at, finished_at) or None."""
        if not node_ids:
            return {}
        with self.db.tx(one_statement=True) as cur:
            rows = cur.execute(queries()["attempt_traces"], {"ids": node_ids}).fetchall()
        return {row["id"]: row for row in rows}
