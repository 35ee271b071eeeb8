"""Who is there: workers, the executors and queues they declared (with their caches)."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from dagq.models import ExecutorInfo
from dagq.runtime.sqlfiles import queries
from dagq.store.tx import Database, transient

log = logging.getLogger("dagq.store")


class FleetCache:
    """The last answers of known_executors and known_queues, each with when it was read
    (monotonic). One per process's Store, shared by the Stores derived from it."""

    def __init__(self) -> None:
        self.executors: tuple[float, dict[str, ExecutorInfo] | None] = (0.0, None)
        self.queues: tuple[float, frozenset[str] | None] = (0.0, None)


class FleetRepo:
    """Workers, executors and queues."""

    def __init__(self, db: Database, cache: FleetCache) -> None:
        self.db = db
        self.cache = cache

    @transient
    def register_worker(
        self, *, worker: str, hostname: str, pid: int, queues: list[str], threads: int,
        executors: list[ExecutorInfo], heartbeat_s: float = 5.0,
        actors: list[str] | None = None,
    ) -> list[str]:
        """`actors`: the plain Dramatiq actors it serves, listed beside its executors
        in the worker's row (not in dagq.executors, which keeps executors' defaults).

        Two statements, each a transaction of its own (a client frozen between them
        holds no lock). Executors already stored as declared are not written; a changed
        one whose row another transaction holds (a capped executor's row, held by a
        lease: perhaps one frozen mid-transaction) is not waited for. Returns those
        names, still to write: call again later (a start-up never waits for a lease)."""
        q = queries()
        names = sorted({e.name for e in executors} | set(actors or ()))
        held: list[str] = []
        if executors:
            with self.db.tx(one_statement=True) as cur:
                held = [row["name"] for row in cur.execute(q["upsert_executors"], {
                    "names": [e.name for e in executors], "queues": [e.queue for e in executors],
                    "max_attempts": [e.max_attempts for e in executors],
                    "timeouts": [e.timeout_s for e in executors],
                    "concurrency": [e.concurrency for e in executors],
                    "rates": [e.rate_per_s for e in executors],
                })]
        with self.db.tx(one_statement=True) as cur:
            cur.execute(q["register_worker"], {
                "id": worker, "hostname": hostname, "pid": pid, "queues": queues,
                "executors": names, "threads": threads,
                "heartbeat_s": heartbeat_s,
            })
        return held

    @transient
    def stop_worker(self, worker: str) -> None:
        with self.db.tx() as cur:
            cur.execute(queries()["stop_worker"], {"id": worker})

    def known_executors(self, *, max_age_s: float = 0.0) -> dict[str, ExecutorInfo]:
        """Executors some worker has served; `max_age_s` allows a cached answer."""
        cached_at, cached = self.cache.executors
        if cached is not None and time.monotonic() - cached_at <= max_age_s:
            return cached
        fresh = self._load_executors()
        self.cache.executors = (time.monotonic(), fresh)
        return fresh

    @transient
    def _load_executors(self) -> dict[str, ExecutorInfo]:
        with self.db.tx() as cur:
            rows = cur.execute(queries()["known_executors"]).fetchall()
        return {row["name"]: ExecutorInfo(**row) for row in rows}

    @transient
    def unserved_nodes(self, run_id: uuid.UUID) -> list[dict[str, Any]]:
        """A run's waiting nodes that no live worker serves, per (executor, queue)."""
        with self.db.tx(one_statement=True) as cur:
            return cur.execute(queries()["unserved_run_nodes"], {"run_id": run_id}).fetchall()

    def known_queues(self, *, max_age_s: float = 0.0) -> frozenset[str]:
        """Queues some worker or executor has declared; `max_age_s` allows a cached answer."""
        cached_at, cached = self.cache.queues
        if cached is not None and time.monotonic() - cached_at <= max_age_s:
            return cached
        fresh = self._load_queues()
        self.cache.queues = (time.monotonic(), fresh)
        return fresh

    @transient
    def _load_queues(self) -> frozenset[str]:
        with self.db.tx() as cur:
            rows = cur.execute(queries()["known_queues"]).fetchall()
        return frozenset(row["queue"] for row in rows)

    @transient
    def list_workers(self, *, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Rows of dagq.worker_status, live workers first: id, status, hostname, pid,
        queues, threads, started_at, heartbeat_at, heartbeat_age_s, running,
        expired_leases, stopped_at."""
        with self.db.tx() as cur:
            return cur.execute(queries()["dashboard_workers"], {
                "status": status, "limit": limit}).fetchall()
