"""What one drain cost, per node: WAL, HOT updates, Postgres and worker CPU.

Read before the workers start and after they stopped, around the drain only (the
submits and the checkpoint before it are outside the window):

- WAL: `pg_stat_wal` (records, full-page images, bytes), cluster-wide, so autovacuum
  and the checkpointer count too: what the drain cost the server.
- HOT: `n_tup_upd` / `n_tup_hot_upd` of every dagq table the drain updated.
- Postgres CPU: the postmaster's process tree in /proc (see procstat), when the server
  runs on this machine and its postmaster can be found; workers' CPU: the worker
  processes' trees, from when they registered until the queue was empty.

Statistics reach these views lazily (PostgreSQL 15+: a backend flushes at most once a
second, an idle one up to 10 s later), so the window is closed with care: the bench's
own connections are made to flush (`pg_stat_force_next_flush()`) before each reading,
and the after-reading waits until the workers' backends have exited, which flushes
everything they held. Any figure that cannot be read is None ("n/a" in the report).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from dagq.bench import procstat

log = logging.getLogger("dagq.bench")

BACKENDS_GONE_TIMEOUT_S = 10.0
# pg_postmaster_start_time() and /proc's start time of the same process differ by the
# server's early start-up; a process of another pid namespace would differ by far more.
SAME_PROCESS_S = 10.0


def find_postmaster(conn: psycopg.Connection[Any], q: dict[str, str],
                    root: Path = procstat.PROC) -> int | None:
    """The pid (in this machine's /proc) of the server `conn` is connected to: from
    `<data_directory>/postmaster.pid` if this role may read the setting and the file,
    else the parent of this session's backend. None unless the process found started
    when the server did (a remote server, or one in another pid namespace)."""
    row = conn.execute(q["server_process"]).fetchone() or {}
    started = row.get("postmaster_started")
    candidates = []
    with contextlib.suppress(psycopg.Error, OSError, ValueError, IndexError):
        directory = (conn.execute(q["data_directory"]).fetchone() or {})["data_directory"]
        candidates.append(int((Path(directory) / "postmaster.pid").read_text().split()[0]))
    backend = procstat.read_stat(int(row.get("backend_pid") or 0), root)
    if backend is not None:
        candidates.append(backend.ppid)
    for pid in candidates:
        stat = procstat.read_stat(pid, root)
        begun = procstat.started_at(stat, root) if stat is not None else None
        if begun is not None and started is not None and abs(begun - started) < SAME_PROCESS_S:
            return pid
    log.info("the server's processes are not readable here: Postgres CPU is n/a")
    return None


@dataclass
class Reading:
    wal: dict[str, int] | None
    updates: dict[str, tuple[int, int]] | None  # table -> (updates, HOT updates)
    postgres_ticks: int | None


@dataclass
class DrainCosts:
    """Open with `begin` before the workers start; `workers_ready` / `workers_drained`
    around the drain; `end` once they stopped; then `per_node`."""

    conn: psycopg.Connection[Any]
    q: dict[str, str]
    postmaster: int | None
    root: Path = procstat.PROC
    before: Reading | None = None
    after: Reading | None = None
    backends: set[int] = field(default_factory=set)
    worker_ticks: list[int | None] = field(default_factory=lambda: [None, None])

    def begin(self, pool: Any = None) -> DrainCosts:
        """The before-reading; `pool`'s idle connections flush their statistics first
        (the submits' updates would otherwise land inside the window)."""
        if pool is not None:
            flush_pool(pool, self.q["stats_flush"])
        self.backends = self._backends()
        self.before = self._read()
        return self

    def workers_ready(self, pids: list[int]) -> None:
        self.worker_ticks[0] = procstat.tree_ticks(pids, self.root)

    def workers_drained(self, pids: list[int]) -> None:
        self.worker_ticks[1] = procstat.tree_ticks(pids, self.root)

    def end(self) -> None:
        """The after-reading, once the backends opened since `begin` have exited."""
        deadline = time.monotonic() + BACKENDS_GONE_TIMEOUT_S
        while self._backends() - self.backends:
            if time.monotonic() > deadline:
                log.warning("worker backends still open after %.0fs: WAL and HOT figures "
                            "may miss their last second", BACKENDS_GONE_TIMEOUT_S)
                break
            time.sleep(0.01)
        self.after = self._read()

    def per_node(self, nodes: int) -> dict[str, Any]:
        if self.before is None or self.after is None:
            raise RuntimeError("DrainCosts.per_node before begin() and end()")
        return per_node_figures(self.before, self.after, self.worker_ticks, nodes)

    def _backends(self) -> set[int]:
        return {_first(r) for r in self.conn.execute(self.q["client_backends"]).fetchall()}

    def _read(self) -> Reading:
        with contextlib.suppress(psycopg.Error):  # before 15: no such function
            self.conn.execute(self.q["stats_flush"])
        wal = None
        with contextlib.suppress(psycopg.Error):  # before 14: no pg_stat_wal
            row = self.conn.execute(self.q["wal_totals"]).fetchone()
            wal = {key: int(row[key]) for key in ("wal_records", "wal_fpi", "wal_bytes")}
        updates = None
        with contextlib.suppress(psycopg.Error):
            updates = {r["relname"]: (int(r["n_tup_upd"]), int(r["n_tup_hot_upd"]))
                       for r in self.conn.execute(self.q["table_updates"]).fetchall()}
        ticks = None if self.postmaster is None else procstat.tree_ticks(
            [self.postmaster], self.root)
        return Reading(wal=wal, updates=updates, postgres_ticks=ticks)


def flush_pool(pool: Any, statement: str) -> None:
    """Every connection `pool` holds flushes its pending statistics (they are idle
    between phases, so checking all of them out at once gets each one)."""
    size = int(pool.get_stats().get("pool_size", 0))
    conns = [pool.getconn() for _ in range(size)]
    try:
        for conn in conns:
            with contextlib.suppress(psycopg.Error):
                conn.execute(statement)
    finally:
        for conn in conns:
            pool.putconn(conn)


def per_node_figures(before: Reading, after: Reading, worker_ticks: list[int | None],
                     nodes: int) -> dict[str, Any]:
    """The differences of two readings divided by the nodes drained (None where either
    reading lacks the figure); HOT for every table with an update in between."""
    def per(value: float | None, digits: int = 2) -> float | None:
        return None if value is None or nodes <= 0 else round(value / nodes, digits)

    wal: dict[str, float | None] = {"wal_records": None, "wal_fpi": None, "wal_bytes": None}
    if before.wal is not None and after.wal is not None:
        wal = {key: after.wal[key] - before.wal[key] for key in wal}
    hot: dict[str, dict[str, Any]] = {}
    if before.updates is not None and after.updates is not None:
        for table, (updates, hot_updates) in sorted(after.updates.items()):
            was = before.updates.get(table, (0, 0))
            done, done_hot = updates - was[0], hot_updates - was[1]
            if done > 0:
                hot[table] = {"updates": done, "hot_updates": done_hot,
                              "ratio": round(done_hot / done, 3),
                              "updates_per_node": per(done)}
    return {
        "nodes": nodes,
        "wal_records_per_node": per(wal["wal_records"]),
        "wal_fpi_per_node": per(wal["wal_fpi"]),
        "wal_bytes_per_node": per(wal["wal_bytes"], 0),
        "postgres_cpu_ms_per_node": per(procstat.ticks_delta_ms(
            before.postgres_ticks, after.postgres_ticks), 3),
        "worker_cpu_ms_per_node": per(procstat.ticks_delta_ms(*worker_ticks), 3),
        "hot": hot if before.updates is not None and after.updates is not None else None,
    }


def _first(row: Any) -> Any:
    return next(iter(row.values())) if isinstance(row, dict) else row[0]
