"""How long migration 025 (run_events partitioned by day) takes on a loaded database, and
what waits meanwhile (issue 30, item 5; figures in docs/performance.md).

    .venv/bin/python scripts/measure_partition_migration.py [--events N] [--nodes N]
        [--chunks N] [--retention]

Against DAGQ_DATABASE_URL's server (a scratch database is created and dropped there), or
an embedded Postgres in a temporary directory. The database is migrated to 024, loaded
with N finished nodes (10 per run) and N events, VACUUM ANALYZEd; then, while migration
025 runs, one thread inserts events and one updates node rows, each one row per
transaction as fast as it can: the longest wait of each is what the migration's locks
cost it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from dagq.runtime import migrate as migrate_module
from dagq.runtime.migrate import migrate

PARTITIONS = 25
DATABASE = "dagq_measure_partitions"


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


def load(url: str, events: int, nodes: int, chunks: int = 0) -> None:
    runs = max(nodes // 10, 1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("""
            INSERT INTO dagq.runs (id, tenant, workflow, spec, fingerprint, nodes_total,
                                   nodes_remaining, status, created_at, finished_at)
            SELECT md5(g::text)::uuid, 't', 'bulk', '{}', 'f', 10, 0, 'succeeded',
                   now() - interval '2 days', now() - interval '2 days'
            FROM generate_series(1, %s) g""", (runs,))
        conn.execute("""
            INSERT INTO dagq.node_tasks (run_id, node_key, executor, status, attempts,
                                         started_at, finished_at, outputs)
            SELECT md5((g %% %s + 1)::text)::uuid, 'n' || g, 'builtin.noop', 'succeeded', 1,
                   now() - interval '2 days', now() - interval '2 days', '{}'
            FROM generate_series(1, %s) g""", (runs, nodes))
        conn.execute("""
            INSERT INTO dagq.run_events (run_id, node_key, type, attempt, data, created_at)
            SELECT md5((g %% %s + 1)::text)::uuid, 'n' || g, 'node_succeeded', 1, '{}',
                   now() - interval '2 days' + make_interval(secs => g %% 86400)
            FROM generate_series(1, %s) g""", (runs, events))
        conn.execute("""
            INSERT INTO dagq.node_stream (run_id, node_key, attempt, seq, text, created_at)
            SELECT md5((g %% %s + 1)::text)::uuid, 'n' || (g %% %s + 1), 1, g,
                   repeat('x', 64), now() - interval '2 days'
            FROM generate_series(1, %s) g""", (runs, runs, chunks))
        conn.execute("VACUUM ANALYZE dagq.runs, dagq.node_tasks, dagq.run_events, "
                     "dagq.node_stream")


class Probe(threading.Thread):
    """One statement per transaction in a loop; records the longest one."""

    def __init__(self, url: str, statement: str, params: tuple[object, ...]) -> None:
        super().__init__(daemon=True)
        self.url, self.statement, self.params = url, statement, params
        self.stop = threading.Event()
        self.longest_s = 0.0
        self.count = 0
        self.errors: list[str] = []

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    conn.execute(self.statement, self.params)
                except psycopg.Error as exc:
                    self.errors.append(str(exc).splitlines()[0])
                self.longest_s = max(self.longest_s, time.perf_counter() - started)
                self.count += 1


def measure(url: str, events: int, nodes: int, chunks: int = 0) -> dict[str, object]:
    original = migrate_module.migrations
    migrate_module.migrations = lambda: [m for m in original() if m.version < PARTITIONS]
    try:
        migrate(url)
    finally:
        migrate_module.migrations = original
    started = time.perf_counter()
    load(url, events, nodes, chunks)
    loaded_s = time.perf_counter() - started
    run_id = "c4ca4238-a0b9-2382-0dcc-509a6f75849b"  # md5('1'): the first loaded run
    writer = Probe(url, "INSERT INTO dagq.run_events (run_id, type) VALUES (%s, 'probe')",
                   (run_id,))
    updater = Probe(url, "UPDATE dagq.node_tasks SET version = version + 1 "
                         "WHERE run_id = %s AND node_key = 'n1'", (run_id,))
    for probe in (writer, updater):
        probe.start()
    time.sleep(1.0)
    before = {"writer": writer.longest_s, "updater": updater.longest_s}
    writer.longest_s = updater.longest_s = 0.0
    started = time.perf_counter()
    applied = migrate(url)
    migration_s = time.perf_counter() - started
    time.sleep(1.0)
    for probe in (writer, updater):
        probe.stop.set()
        probe.join(10)
    return {"events": events, "nodes": nodes, "chunks": chunks, "load_s": round(loaded_s, 1),
            "applied": applied, "migration_s": round(migration_s, 3),
            "longest_event_insert_s (during)": round(writer.longest_s, 3),
            "longest_node_update_s (during)": round(updater.longest_s, 3),
            "longest before (event insert, node update)": (round(before["writer"], 4),
                                                           round(before["updater"], 4)),
            "probe errors": writer.errors + updater.errors}


def wal_bytes(conn: psycopg.Connection, since: str) -> int:
    row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)",
                       (since,)).fetchone()
    return int(row[0]) if row else 0


def phase(result: dict[str, object], writer: Probe, name: str, started: float) -> None:
    """The probe writer's rate and longest insert since `started`, then reset."""
    elapsed = time.perf_counter() - started
    result[f"{name}: probe inserts/s, longest insert s"] = (
        round(writer.count / elapsed), round(writer.longest_s, 3))
    writer.longest_s, writer.count = 0.0, 0


def retire_both_ways(conn: psycopg.Connection, writer: Probe) -> dict[str, object]:
    result: dict[str, object] = {}
    conn.execute("CREATE TABLE dagq.events_copy AS TABLE dagq.run_events_p0")
    runs = [r[0] for r in conn.execute("SELECT DISTINCT run_id FROM dagq.run_events_p0")]
    lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
    writer.longest_s, writer.count = 0.0, 0
    started = time.perf_counter()
    for i in range(0, len(runs), 100):
        conn.execute("DELETE FROM dagq.run_events WHERE run_id = ANY(%s)", (runs[i:i + 100],))
    result["row-by-row DELETE (0.2 prune), s"] = round(time.perf_counter() - started, 2)
    phase(result, writer, "DELETE", started)
    result["row-by-row DELETE, WAL MB"] = round(wal_bytes(conn, lsn) / 2**20, 1)
    started = time.perf_counter()
    conn.execute("VACUUM dagq.run_events_p0")
    result["VACUUM after it, s"] = round(time.perf_counter() - started, 2)
    conn.execute("INSERT INTO dagq.run_events_p0 SELECT * FROM dagq.events_copy")
    conn.execute("DROP TABLE dagq.events_copy")
    conn.execute("CHECKPOINT")
    lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
    writer.longest_s, writer.count = 0.0, 0
    started = time.perf_counter()
    conn.execute("ALTER TABLE dagq.run_events DETACH PARTITION dagq.run_events_p0 CONCURRENTLY")
    conn.execute("DROP TABLE dagq.run_events_p0")
    conn.execute("ANALYZE dagq.run_events")
    result["DETACH CONCURRENTLY + DROP + ANALYZE (0.3), s"] = round(
        time.perf_counter() - started, 3)
    result["DETACH + DROP + ANALYZE, WAL MB"] = round(wal_bytes(conn, lsn) / 2**20, 2)
    phase(result, writer, "DETACH+DROP", started)
    return result


def measure_retention(url: str) -> dict[str, object]:
    """After measure(): the loaded events (in run_events_p0, before the day partitions)
    retired both ways, on the same rows: 0.2's prune deleted a run's events row by row
    (100 runs a statement); 0.3 detaches and drops the partition. Meanwhile one thread
    inserts events of a run created today (into today's partition), one per
    transaction: its longest wait is what retiring costs a writer."""
    run_id = "00000000-0000-0000-0000-00000000beef"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM dagq.run_events WHERE type = 'probe'")
        writer = Probe(url, "INSERT INTO dagq.run_events (run_id, type, created_at) "
                            "VALUES (%s, 'probe', now() + interval '1 day')", (run_id,))
        writer.start()
        time.sleep(1.0)
        result: dict[str, object] = {}
        phase(result, writer, "before", time.perf_counter() - 1.0)
        result.update(retire_both_ways(conn, writer))
        writer.stop.set()
        writer.join(10)
        result["probe errors while retiring"] = writer.errors[:3]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--nodes", type=int, default=1_000_000)
    parser.add_argument("--chunks", type=int, default=0,
                        help="streamed chunks (64 bytes each) in dagq.node_stream")
    parser.add_argument("--retention", action="store_true",
                        help="then retire the loaded events both ways (DELETE, DROP)")
    args = parser.parse_args()
    admin = os.environ.get("DAGQ_DATABASE_URL")
    embedded = None
    tmp = None
    if not admin:
        from dagq.runtime.embedded_pg import EmbeddedPostgres

        tmp = tempfile.TemporaryDirectory(prefix="dagqm-", dir="/tmp")
        embedded = EmbeddedPostgres(Path(tmp.name), database="postgres")
        admin = embedded.start()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(DATABASE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        major = conn.info.server_version // 10000
    try:
        result = measure(with_database(admin, DATABASE), args.events, args.nodes,
                         args.chunks)
        if args.retention:
            result.update(measure_retention(with_database(admin, DATABASE)))
        print(f"PostgreSQL {major}")
        for key, value in result.items():
            print(f"{key}: {value}")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(DATABASE)))
        if embedded is not None:
            embedded.release()
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
