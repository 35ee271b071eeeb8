"""Who is there: workers and their executors and queues, API keys, cron schedules."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from dagq.errors import NotFound
from dagq.models import (
    ApiKey,
    ExecutorInfo,
    ScheduleRecord,
)
from dagq.runtime.sqlfiles import queries
from dagq.store.core import (
    StoreCore,
    transient,
)

log = logging.getLogger("dagq.store")


def _schedule(row: dict[str, Any]) -> ScheduleRecord:
    return ScheduleRecord(schedule_id=row["id"], **{k: v for k, v in row.items() if k != "id"})



class DirectoryStore(StoreCore):
    """Workers, executors, queues, API keys and schedules."""

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
            with self._tx(one_statement=True) as cur:
                held = [row["name"] for row in cur.execute(q["upsert_executors"], {
                    "names": [e.name for e in executors], "queues": [e.queue for e in executors],
                    "max_attempts": [e.max_attempts for e in executors],
                    "timeouts": [e.timeout_s for e in executors],
                    "concurrency": [e.concurrency for e in executors],
                    "rates": [e.rate_per_s for e in executors],
                })]
        with self._tx(one_statement=True) as cur:
            cur.execute(q["register_worker"], {
                "id": worker, "hostname": hostname, "pid": pid, "queues": queues,
                "executors": names, "threads": threads,
                "heartbeat_s": heartbeat_s,
            })
        return held

    @transient
    def stop_worker(self, worker: str) -> None:
        with self._tx() as cur:
            cur.execute(queries()["stop_worker"], {"id": worker})

    def known_executors(self, *, max_age_s: float = 0.0) -> dict[str, ExecutorInfo]:
        """Executors some worker has served; `max_age_s` allows a cached answer."""
        cached_at, cached = self._executors_cache
        if cached is not None and time.monotonic() - cached_at <= max_age_s:
            return cached
        fresh = self._load_executors()
        self._executors_cache = (time.monotonic(), fresh)
        return fresh

    @transient
    def _load_executors(self) -> dict[str, ExecutorInfo]:
        with self._tx() as cur:
            rows = cur.execute(queries()["known_executors"]).fetchall()
        return {row["name"]: ExecutorInfo(**row) for row in rows}

    @transient
    def unserved_nodes(self, run_id: uuid.UUID) -> list[dict[str, Any]]:
        """A run's waiting nodes that no live worker serves, per (executor, queue)."""
        with self._tx(one_statement=True) as cur:
            return cur.execute(queries()["unserved_run_nodes"], {"run_id": run_id}).fetchall()

    def known_queues(self, *, max_age_s: float = 0.0) -> frozenset[str]:
        """Queues some worker or executor has declared; `max_age_s` allows a cached answer."""
        cached_at, cached = self._queues_cache
        if cached is not None and time.monotonic() - cached_at <= max_age_s:
            return cached
        fresh = self._load_queues()
        self._queues_cache = (time.monotonic(), fresh)
        return fresh

    @transient
    def _load_queues(self) -> frozenset[str]:
        with self._tx() as cur:
            rows = cur.execute(queries()["known_queues"]).fetchall()
        return frozenset(row["queue"] for row in rows)

    @transient
    def insert_schedule(
        self, *, tenant: str, workflow: Any, version: int | None, cron: str, timezone: str,
        inputs: Any,
    ) -> ScheduleRecord:
        with self._tx() as cur:
            row = cur.execute(queries()["insert_schedule"], {
                "id": uuid.uuid4(), "tenant": tenant, "workflow": Jsonb(workflow),
                "version": version, "cron": cron, "timezone": timezone,
                "inputs": Jsonb(inputs),
            }).fetchone()
        return _schedule(row)

    @transient
    def get_schedule(self, schedule_id: uuid.UUID, tenant: str | None) -> ScheduleRecord:
        with self._tx() as cur:
            row = cur.execute(queries()["get_schedule"], {"id": schedule_id}).fetchone()
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise NotFound(f"schedule {schedule_id} not found")
        return _schedule(row)

    @transient
    def list_schedules(self, tenant: str | None) -> list[ScheduleRecord]:
        with self._tx() as cur:
            rows = cur.execute(queries()["list_schedules"], {"tenant": tenant}).fetchall()
        return [_schedule(row) for row in rows]

    @transient
    def delete_schedule(self, schedule_id: uuid.UUID, tenant: str | None) -> None:
        with self._tx() as cur:
            row = cur.execute(queries()["delete_schedule"],
                              {"id": schedule_id, "tenant": tenant}).fetchone()
        if row is None:
            raise NotFound(f"schedule {schedule_id} not found")

    @transient
    def record_firing(
        self, schedule_id: uuid.UUID, fire_at: datetime, run_id: uuid.UUID | None,
        error: str | None,
    ) -> None:
        with self._tx() as cur:
            cur.execute(queries()["record_firing"], {
                "id": schedule_id, "fire_at": fire_at, "run_id": run_id, "error": error})

    @transient
    def insert_api_key(self, *, tenant: str, key_hash: str, admin: bool) -> uuid.UUID:
        key_id = uuid.uuid4()
        with self._tx() as cur:
            cur.execute(queries()["insert_api_key"], {
                "id": key_id, "tenant": tenant, "key_hash": key_hash, "admin": admin,
            })
        return key_id

    @transient
    def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        with self._tx() as cur:
            row = cur.execute(queries()["api_key_by_hash"], {"key_hash": key_hash}).fetchone()
        return ApiKey(**row) if row else None

    @transient
    def list_workers(self, *, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Rows of dagq.worker_status, live workers first: id, status, hostname, pid,
        queues, threads, started_at, heartbeat_at, heartbeat_age_s, running,
        expired_leases, stopped_at."""
        with self._tx() as cur:
            return cur.execute(queries()["dashboard_workers"], {
                "status": status, "limit": limit}).fetchall()
