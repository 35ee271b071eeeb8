"""Schema-level guarantees: migrations are concurrent-safe; the lease uses its index."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from dagq.runtime.migrate import migrate, pending_migrations
from dagq.runtime.sqlfiles import migrations, queries
from tests.harness.plans import generic_plan, scans_of


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

    from tests.harness.pg import with_database

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


@pytest.fixture
def bulk(sql) -> psycopg.Connection:
    """5k finished runs of 20 nodes, one open run with 100 queued and 50 running nodes,
    analyzed: the statistics of a queue that has been busy for a while."""
    sql.execute("""
        INSERT INTO dagq.runs (id, tenant, workflow, spec, fingerprint, nodes_total,
                               nodes_remaining, status, finished_at)
        SELECT ('00000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid, 't', 'bulk',
               '{}', 'f', 20, 0, 'succeeded', now()
        FROM generate_series(1, 5000) g
    """)
    sql.execute("""
        INSERT INTO dagq.node_tasks (run_id, node_key, executor, status, attempts,
                                     started_at, finished_at, outputs)
        SELECT ('00000000-0000-0000-0000-' || lpad((g % 5000 + 1)::text, 12, '0'))::uuid,
               'done' || g, 'builtin.noop', 'succeeded', 1, now(), now(), '{}'
        FROM generate_series(1, 100000) g
    """)
    sql.execute("""
        INSERT INTO dagq.runs (id, tenant, workflow, spec, fingerprint, nodes_total,
                               nodes_remaining, status)
        VALUES ('00000000-0000-0000-0000-0000000000aa', 't', 'bulk', '{}', 'f', 150, 150,
                'running')
    """)
    sql.execute("""
        INSERT INTO dagq.node_tasks (run_id, node_key, executor, status, queued_at,
                                     started_at, lease_owner, lease_expires_at)
        SELECT '00000000-0000-0000-0000-0000000000aa', 'todo' || g, 'builtin.noop',
               CASE WHEN g <= 100 THEN 'queued' ELSE 'running' END, now(),
               CASE WHEN g > 100 THEN now() END, CASE WHEN g > 100 THEN 'w' END,
               CASE WHEN g > 100 THEN now() + interval '30 seconds' END
        FROM generate_series(1, 150) g
    """)
    sql.execute("ANALYZE dagq.node_tasks, dagq.runs")
    return sql


# The statements a worker runs for every node, planned as workers plan them (generic).
HOT_STATEMENTS = ["lease_nodes", "lease_released", "heartbeat_leases", "complete_nodes",
                  "release_dependents", "account_runs", "insert_events", "retry_node",
                  "fail_node", "node_for_failure", "release_leases", "lock_run",
                  "finish_map_item", "skip_descendants", "submit_run",
                  # durable waits: starting, signalling, firing
                  "set_wait_deadlines", "take_buffered_signal", "end_wait",
                  "lock_signal_waiters", "due_waits", "lock_due_wait"]


@pytest.mark.parametrize("name", HOT_STATEMENTS)
def test_hot_statements_never_scan_a_whole_table(bulk, name: str) -> None:
    rows = generic_plan(bulk, queries()[name])
    plan = "\n".join(r["QUERY PLAN"] for r in rows)
    for table in ("node_tasks", "runs", "run_events"):
        assert f"Seq Scan on {table} " not in plan, plan


def test_lease_uses_the_partial_index_after_bulk_insert(bulk) -> None:
    """After 100k finished rows + ANALYZE the planner must still walk only queued rows."""
    sql = bulk
    params = {"worker": "w", "queue": "default", "limit": 16, "ttl_s": 30, "executors": None,
              "capped": None}
    custom = sql.execute("EXPLAIN (FORMAT JSON) " + queries()["lease_nodes"], params).fetchone()
    # Workers plan each statement once (plan_cache_mode=force_generic_plan): the plan
    # without parameter values must walk the same index.
    [generic] = generic_plan(sql, queries()["lease_nodes"], json=True)
    for plan in (custom, generic):
        scans = json.dumps(scans_of(plan["QUERY PLAN"][0]["Plan"], "node_tasks"))
        assert "node_tasks_dequeue" in scans
        assert "node_tasks_pkey" not in scans and "Seq Scan" not in scans


def test_100k_waiting_nodes_stay_out_of_the_lease_path(bulk) -> None:
    """Waiting rows are not in the dequeue index: leasing walks only queued rows, and the
    sweeper finds due waits through node_tasks_wait_deadline (issue 16)."""
    sql = bulk
    sql.execute("""
        INSERT INTO dagq.node_tasks (run_id, node_key, executor, status, wait_spec,
                                     wait_until, started_at)
        SELECT '00000000-0000-0000-0000-0000000000aa', 'wait' || g, 'dagq.wait', 'waiting',
               '{"signal": "approval"}', now() + make_interval(secs => g), now()
        FROM generate_series(1, 100000) g
    """)
    sql.execute("ANALYZE dagq.node_tasks")
    params = {"worker": "w", "queue": "default", "limit": 16, "ttl_s": 30, "executors": None,
              "capped": None}
    custom = sql.execute("EXPLAIN (FORMAT JSON) " + queries()["lease_nodes"], params).fetchone()
    [generic] = generic_plan(sql, queries()["lease_nodes"], json=True)
    for plan in (custom, generic):
        scans = json.dumps(scans_of(plan["QUERY PLAN"][0]["Plan"], "node_tasks"))
        assert "node_tasks_dequeue" in scans
        assert "node_tasks_pkey" not in scans and "Seq Scan" not in scans
    due = sql.execute("EXPLAIN (FORMAT JSON) " + queries()["due_waits"],
                      {"now": None, "limit": 500}).fetchone()
    scans = json.dumps(scans_of(due["QUERY PLAN"][0]["Plan"], "node_tasks"))
    assert "node_tasks_wait_deadline" in scans and "Seq Scan" not in scans


def test_handing_off_released_nodes_looks_them_up_by_id(bulk) -> None:
    """lease_released is given the ids a completion released: it must not walk the queue."""
    [plan] = generic_plan(bulk, queries()["lease_released"], json=True)
    scans = scans_of(plan["QUERY PLAN"][0]["Plan"], "node_tasks")
    by_index = {scan.get("Index Name"): scan for scan in scans}
    # The released ids by primary key; the one probe for a higher-priority queued node
    # reads the head of the queue's index.
    assert set(by_index) == {"node_tasks_pkey", "node_tasks_dequeue"}, scans
    assert "id = ANY" in by_index["node_tasks_pkey"]["Index Cond"]
    assert by_index["node_tasks_dequeue"]["Node Type"] == "Index Scan"


