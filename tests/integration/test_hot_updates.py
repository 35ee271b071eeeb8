"""A run's start (queued -> running, in the lease) is a HOT update: it writes no index
entry. Migration 009 made it one; migration 021's concurrency index (a `status`
predicate) silently undid it for every run until migration 022."""

from __future__ import annotations

import re
from typing import Any

import psycopg

from dagq import service
from dagq.store import Store
from tests.helpers import spec

# What a run's start and its progress change (start_leases, account_runs): no index on
# dagq.runs may use one of them, as a key, an expression or a predicate.
CHANGED_ON_THE_WAY = ("status", "started_at", "version", "nodes_remaining",
                      "nodes_succeeded", "nodes_failed", "concurrency_waiting")


def start_in_one_transaction(sql: psycopg.Connection, run_id: Any) -> dict[str, int]:
    """Lease the run's root through dagq.start_leases (the lease's own function) and
    read this transaction's own update counters of dagq.runs."""
    (node_id,) = [r["id"] for r in sql.execute(
        "SELECT id FROM dagq.node_tasks WHERE run_id = %s AND status = 'queued'", (run_id,))]
    with sql.transaction():
        started = sql.execute("SELECT id FROM dagq.start_leases(ARRAY[%s]::bigint[], 'w', 30)",
                              (node_id,)).fetchall()
        assert [r["id"] for r in started] == [node_id]
        return sql.execute(
            "SELECT pg_stat_get_xact_tuples_updated('dagq.runs'::regclass) AS updated, "
            "pg_stat_get_xact_tuples_hot_updated('dagq.runs'::regclass) AS hot").fetchone()


def test_a_run_start_writes_no_index_entry(repo: Store, sql) -> None:
    run_id = repo.submit_run(tenant="t", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
    assert start_in_one_transaction(sql, run_id) == {"updated": 1, "hot": 1}
    assert repo.get_run(run_id).status == "running"


def test_a_keyed_run_start_writes_no_index_entry(repo: Store, sql) -> None:
    keyed = {"name": "chat", "concurrency": {"key": "inputs.conversation", "limit": 1},
             "nodes": {"reply": {"executor": "builtin.noop"}}}
    outcome = service.submit(repo, tenant="acme", workflow=keyed, inputs={"conversation": "c"})
    assert start_in_one_transaction(sql, outcome.run_id) == {"updated": 1, "hot": 1}


def test_no_index_on_runs_uses_a_column_a_run_changes_on_its_way(sql) -> None:
    rows = sql.execute("SELECT indexname, indexdef FROM pg_indexes "
                       "WHERE schemaname = 'dagq' AND tablename = 'runs'").fetchall()
    assert len(rows) >= 10
    for row in rows:
        columns = set(re.findall(r"[a-z_]+", row["indexdef"].split(" USING ", 1)[1]))
        assert not columns & set(CHANGED_ON_THE_WAY), row
