"""The runs list's error heads (dagq.store.runs.list_runs, sql/queries/runs.sql) at size:
for runs that did not fail fast (no error of their own) the first failed node is looked up
per listed run through the (run_id, node_key) index, never a scan of every node row, and
a page of 200 such runs of 1,000 nodes each is listed quickly."""

from __future__ import annotations

import time

import psycopg
import pytest

from dagq.runtime.sqlfiles import queries
from dagq.store import Store
from tests.harness.plans import generic_plan, scans_of

RUNS, NODES = 200, 1000


@pytest.fixture
def partial_runs(sql) -> psycopg.Connection:
    """RUNS finished runs with fail_fast off, each of NODES nodes of which one failed."""
    sql.execute("""
        INSERT INTO dagq.runs (id, tenant, workflow, spec, fingerprint, nodes_total,
                               nodes_remaining, nodes_failed, status, fail_fast, finished_at,
                               created_at)
        SELECT ('00000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid, 'acme', 'wide',
               '{}', 'f', %(nodes)s, 0, 1, 'partial_succeeded', false, now(),
               now() - g * interval '1 second'
        FROM generate_series(1, %(runs)s) g
    """, {"runs": RUNS, "nodes": NODES})
    sql.execute("""
        INSERT INTO dagq.node_tasks (run_id, node_key, executor, status, queued_at, tenant,
                                     finished_at, error)
        SELECT ('00000000-0000-0000-0000-' || lpad(r::text, 12, '0'))::uuid, 'n' || g,
               'builtin.noop', CASE WHEN g = r THEN 'failed' ELSE 'succeeded' END, now(),
               'acme', now(),
               CASE WHEN g = r THEN jsonb_build_object(
                   'type', 'E', 'message', 'node n' || g || E' broke\nline 2',
                   'traceback', repeat('frame ', 2000)) END
        FROM generate_series(1, %(runs)s) r, generate_series(1, %(nodes)s) g
    """, {"runs": RUNS, "nodes": NODES})
    sql.execute("ANALYZE dagq.node_tasks, dagq.runs")
    return sql


def test_first_failed_nodes_come_from_the_run_node_index(partial_runs, repo: Store) -> None:
    [plan] = generic_plan(partial_runs, queries()["list_runs"], json=True)
    scans = scans_of(plan["QUERY PLAN"][0]["Plan"], "node_tasks")
    assert scans and all(s["Node Type"] != "Seq Scan" for s in scans), scans
    assert {s.get("Index Name") for s in scans} == {"node_tasks_run_node"}, scans

    repo.runs.list_runs(tenant="acme", limit=RUNS)  # warm
    started = time.perf_counter()
    runs = repo.runs.list_runs(tenant="acme", limit=RUNS)
    took = time.perf_counter() - started
    assert len(runs) == RUNS
    # Run g's failed node is n<g>; only the head of its error is read.
    assert {r.run_id.int: r.error for r in runs}[7] == {
        "node": "n7", "type": "E", "message": "node n7 broke\nline 2"}
    assert took < 1.0, f"{RUNS} runs of {NODES} nodes listed in {took:.3f} s"
