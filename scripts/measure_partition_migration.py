"""How long migration 025 (run_events partitioned by day) takes on a loaded database, and
what waits meanwhile (issue 30, item 5; figures in docs/performance.md).

    .venv/bin/python scripts/measure_partition_migration.py [--events N] [--nodes N]

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


def load(url: str, events: int, nodes: int) -> None:
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
        conn.execute("VACUUM ANALYZE dagq.runs, dagq.node_tasks, dagq.run_events")


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


def measure(url: str, events: int, nodes: int) -> dict[str, object]:
    original = migrate_module.migrations
    migrate_module.migrations = lambda: [m for m in original() if m.version < PARTITIONS]
    try:
        migrate(url)
    finally:
        migrate_module.migrations = original
    started = time.perf_counter()
    load(url, events, nodes)
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
    return {"events": events, "nodes": nodes, "load_s": round(loaded_s, 1),
            "applied": applied, "migration_s": round(migration_s, 3),
            "longest_event_insert_s (during)": round(writer.longest_s, 3),
            "longest_node_update_s (during)": round(updater.longest_s, 3),
            "longest before (event insert, node update)": (round(before["writer"], 4),
                                                           round(before["updater"], 4)),
            "probe errors": writer.errors + updater.errors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--nodes", type=int, default=1_000_000)
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
        result = measure(with_database(admin, DATABASE), args.events, args.nodes)
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
