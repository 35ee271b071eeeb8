"""Migration 025 on a database that has events (issue 30, item 5): the old table becomes
the first partition of dagq.run_events, ids continue where they were, reads see the old
events and the new ones as one log, and the old table's indexes are reused (no build)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql as sql_text
from psycopg.rows import dict_row

from dagq.runtime import migrate as migrate_module
from dagq.runtime.db import open_pool
from dagq.runtime.migrate import migrate
from dagq.runtime.sqlfiles import migrations
from dagq.store import Store
from tests.harness.pg import with_database

PARTITIONS = 25


@pytest.fixture
def at_24_url(pg_server, monkeypatch) -> Iterator[str]:
    """A database migrated up to 024 (what 0.2 plus the 0.3 work before this left)."""
    name = f"dagq_test_at24_{os.getpid()}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql_text.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql_text.Identifier(name)))
        conn.execute(sql_text.SQL("CREATE DATABASE {}").format(sql_text.Identifier(name)))
    url = with_database(pg_server.admin_url, name)
    with monkeypatch.context() as patch:
        patch.setattr(migrate_module, "migrations",
                      lambda: [m for m in migrations() if m.version < PARTITIONS])
        migrate(url)
    yield url
    pg_server.drop_database(url)


def analysed(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM pg_stats WHERE schemaname = 'dagq' "
                            "AND tablename = 'run_events' AND inherited").fetchone()[0] > 0


def test_migration_keeps_the_events_and_continues_their_ids(at_24_url: str) -> None:
    run_id = uuid.uuid4()
    with psycopg.connect(at_24_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("""
            INSERT INTO dagq.runs (id, tenant, workflow, spec, fingerprint, nodes_total,
                                   nodes_remaining, status, created_at)
            VALUES (%s, 't', 'wf', '{}', 'f', 1, 1, 'running', now() - interval '3 days')""",
                     (run_id,))
        conn.execute("""
            INSERT INTO dagq.run_events (run_id, type, created_at)
            SELECT %s, 'run_queued', now() - interval '3 days' + make_interval(secs => g)
            FROM generate_series(1, 100) g""", (run_id,))
        conn.execute("INSERT INTO dagq.node_stream (run_id, node_key, attempt, seq, text) "
                     "VALUES (%s, 'a', 1, 1, 'abc')", (run_id,))
        before = conn.execute("SELECT max(id) AS id FROM dagq.run_events").fetchone()["id"]
        assert conn.execute("SELECT relkind FROM pg_class WHERE oid = "
                            "'dagq.run_events'::regclass").fetchone()["relkind"] == "r"

    assert migrate(at_24_url) == [m.version for m in migrations() if m.version >= PARTITIONS]

    with psycopg.connect(at_24_url, autocommit=True, row_factory=dict_row) as conn:
        assert conn.execute("SELECT relkind FROM pg_class WHERE oid = "
                            "'dagq.run_events'::regclass").fetchone()["relkind"] == "p"
        parts = conn.execute("SELECT partition, from_time, to_time FROM "
                             "dagq.run_event_partitions ORDER BY to_time").fetchall()
        assert parts[0]["partition"] == "run_events_p0" and len(parts) >= 8
        # The old table's (run_id, id) index now serves the parent's partitioned index.
        attached = conn.execute("""
            SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'dagq.run_events_run'::regclass""").fetchall()
        assert "run_events_p0_run_id_id_idx" in {r["relname"] for r in attached}
        conn.execute("INSERT INTO dagq.run_events (run_id, type) VALUES (%s, 'run_started')",
                     (run_id,))
        new = conn.execute("SELECT id, tableoid::regclass::text AS part FROM dagq.run_events "
                           "WHERE type = 'run_started'").fetchone()
        assert new["id"] == before + 1
        assert conn.execute("SELECT count(*) AS n FROM dagq.run_events_p0").fetchone()["n"] >= 100
        # The chunks too: the old table is node_stream's first partition, the byte
        # counts' triggers now on the parent count the new partitions' rows.
        assert conn.execute("SELECT relkind FROM pg_class WHERE oid = "
                            "'dagq.node_stream'::regclass").fetchone()["relkind"] == "p"
        assert conn.execute("SELECT text FROM dagq.node_stream_p0").fetchone()["text"] == "abc"
        conn.execute("INSERT INTO dagq.node_stream (run_id, node_key, attempt, seq, text) "
                     "VALUES (%s, 'a', 1, 2, 'de')", (run_id,))
        chunks = conn.execute("SELECT id, tableoid::regclass::text AS part FROM "
                              "dagq.node_stream ORDER BY id").fetchall()
        assert chunks[1]["id"] == chunks[0]["id"] + 1 and chunks[1]["part"] == "dagq.node_stream_p0"
        assert conn.execute("SELECT bytes FROM dagq.stream_bytes_by_run WHERE run_id = %s",
                            (run_id,)).fetchone()["bytes"] == 5

    # The store reads old and new alike, planned as workers and the API plan (generic).
    store = Store(open_pool(at_24_url, size=1, name="test", generic_plans=True))
    try:
        events = store.runs.events(run_id)
        assert [e.id for e in events] == sorted(e.id for e in events)
        assert len(events) == 101 and events[-1].type == "run_started"
        assert [e.type for e in store.runs.events(run_id, after=before)] == ["run_started"]
        # The migration leaves ANALYZE of the parent (its lock held for the sample) to the
        # sweeper's first pass, which drops nothing here.
        assert not analysed(at_24_url)
        assert store.partitions.retire_event_partitions(retention_s=7 * 86_400) == []
        assert analysed(at_24_url)
    finally:
        store.close()


def test_an_event_dated_after_tomorrow_moves_the_first_partitions_bound(at_24_url: str) -> None:
    """A clock set wrong once wrote an event 3 days ahead: the old table still becomes
    the first partition, bounded after that event, and the days after it follow."""
    with psycopg.connect(at_24_url, autocommit=True) as conn:
        conn.execute("INSERT INTO dagq.run_events (run_id, type, created_at) "
                     "VALUES (gen_random_uuid(), 'run_queued', now() + interval '3 days')")
    migrate(at_24_url)
    with psycopg.connect(at_24_url, autocommit=True, row_factory=dict_row) as conn:
        first = conn.execute("""
            SELECT p.to_time, p.to_time = date_trunc('day', now() + interval '4 days', 'UTC')
                   AS after_the_event
            FROM dagq.run_event_partitions p WHERE p.partition = 'run_events_p0'""").fetchone()
        assert first["after_the_event"]
        days = conn.execute("SELECT min(from_time) AS t FROM dagq.run_event_partitions "
                            "WHERE partition <> 'run_events_p0'").fetchone()
        assert days["t"] == first["to_time"]


# The statements of dagq at 024 that this migration's code changed, as 024 runs them:
# `-- dagq:compatible-with 24` says they still work on the partitioned table.
PRUNE_AT_24 = """
WITH doomed AS (
    SELECT id FROM dagq.runs
    WHERE finished_at < coalesce(%(now)s::timestamptz, now())
                        - make_interval(secs => %(retention_s)s)
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), events AS (
    DELETE FROM dagq.run_events e USING doomed d WHERE e.run_id = d.id
), chunks AS (
    DELETE FROM dagq.node_stream s USING doomed d WHERE s.run_id = d.id
)
DELETE FROM dagq.runs r USING doomed d WHERE r.id = d.id
RETURNING r.id"""
EVENTS_AFTER_AT_24 = """
SELECT id, run_id, node_key, type, attempt, data, created_at FROM dagq.run_events
WHERE run_id = %(run_id)s AND id > %(after)s ORDER BY id LIMIT %(limit)s"""


def test_the_previous_release_reads_and_prunes_the_partitioned_table(sql) -> None:
    run_id = uuid.uuid4()
    sql.execute("""
        INSERT INTO dagq.runs (id, tenant, workflow, spec, fingerprint, nodes_total,
                               nodes_remaining, status, created_at, finished_at)
        VALUES (%s, 't', 'wf', '{}', 'f', 1, 0, 'succeeded', now() - interval '10 days',
                now() - interval '9 days')""", (run_id,))
    sql.execute("""
        INSERT INTO dagq.run_events (run_id, type, created_at)
        VALUES (%(r)s, 'run_queued', now() - interval '10 days'),
               (%(r)s, 'run_succeeded', now() + interval '1 day')""", {"r": run_id})
    rows = sql.execute(EVENTS_AFTER_AT_24, {"run_id": run_id, "after": 0,
                                            "limit": 10}).fetchall()
    assert [r["type"] for r in rows] == ["run_queued", "run_succeeded"]
    pruned = sql.execute(PRUNE_AT_24, {"now": None, "retention_s": 7 * 86_400,
                                       "limit": 100}).fetchall()
    assert [r["id"] for r in pruned] == [run_id]
    assert sql.execute("SELECT count(*) AS n FROM dagq.run_events WHERE run_id = %s",
                       (run_id,)).fetchone()["n"] == 0
