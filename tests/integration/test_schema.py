"""Schema-level guarantees: migrations are concurrent-safe; the lease uses its index."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from app.migrate import migrate, pending_migrations
from app.sqlfiles import migrations, queries


def test_migrate_is_idempotent_and_concurrent_safe(pg_server) -> None:
    url = pg_server.new_database()  # already migrated from the template
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: migrate(url), range(4)))
        assert results == [[], [], [], []]
    finally:
        pg_server.drop_database(url)


def test_fresh_database_migrates_once_under_concurrency(pg_server, sql) -> None:
    import psycopg
    from psycopg import sql as sql_text

    from tests.pg import with_database

    name = "dagq_test_fresh_migrate"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql_text.SQL("DROP DATABASE IF EXISTS {}").format(sql_text.Identifier(name)))
        conn.execute(sql_text.SQL("CREATE DATABASE {}").format(sql_text.Identifier(name)))
    url = with_database(pg_server.admin_url, name)
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: migrate(url), range(4)))
        applied = sorted(v for r in results for v in r)
        assert applied == [m.version for m in migrations()]  # each applied exactly once
        with psycopg.connect(url) as conn:
            assert pending_migrations(conn) == []
    finally:
        pg_server.drop_database(url)


def test_contract_tables_exist(sql) -> None:
    rows = sql.execute("SELECT table_name FROM information_schema.tables "
                       "WHERE table_schema = 'dagq'").fetchall()
    names = {r["table_name"] for r in rows}
    assert {"runs", "node_tasks", "run_events", "workflows", "api_keys", "workers",
            "schema_migrations"} <= names


def test_lease_uses_the_partial_index_after_bulk_insert(sql) -> None:
    """After 100k finished rows + ANALYZE the planner must still walk only queued rows."""
    sql.execute("""
        INSERT INTO dagq.runs (id, tenant, workflow, spec, fingerprint, nodes_total,
                               nodes_remaining, status)
        VALUES ('00000000-0000-0000-0000-0000000000aa', 't', 'bulk', '{}', 'f', 100100, 100,
                'running')
    """)
    sql.execute("""
        INSERT INTO dagq.node_tasks (run_id, node_key, executor, status, attempts,
                                     started_at, finished_at, outputs)
        SELECT '00000000-0000-0000-0000-0000000000aa', 'done' || g, 'builtin.noop',
               'succeeded', 1, now(), now(), '{}'
        FROM generate_series(1, 100000) g
    """)
    sql.execute("""
        INSERT INTO dagq.node_tasks (run_id, node_key, executor, status, queued_at)
        SELECT '00000000-0000-0000-0000-0000000000aa', 'todo' || g, 'builtin.noop',
               'queued', now()
        FROM generate_series(1, 100) g
    """)
    sql.execute("ANALYZE dagq.node_tasks")
    plan_rows = sql.execute(
        "EXPLAIN (FORMAT JSON) " + queries()["lease_nodes"],
        {"worker": "w", "queue": "default", "limit": 16, "ttl_s": 30, "executors": None},
    ).fetchone()
    candidates = _find(plan_rows["QUERY PLAN"][0]["Plan"], "CTE candidates")
    assert candidates is not None
    scans = json.dumps(candidates)
    assert "node_tasks_dequeue" in scans
    assert "node_tasks_pkey" not in scans and "Seq Scan" not in scans


def _find(plan: dict, subplan: str) -> dict | None:
    if plan.get("Subplan Name") == subplan:
        return plan
    for child in plan.get("Plans", []):
        if (found := _find(child, subplan)) is not None:
            return found
    return None
