"""Run metadata in the store (issue 34, item 2): the metadata filter is answered by the GIN
index runs_metadata (the plan, custom and generic as PostgreSQL 15 plans a prepared
statement, on 100,000 runs), a rerun keeps its original's metadata, and the filters
combine with the tenant, the status and the time range."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from dagq import service
from dagq.runtime.sqlfiles import queries
from dagq.spec.metadata import json_path
from dagq.store import Store
from tests.harness.drive import drive
from tests.harness.plans import generic_plan, scans_of

RUNS = 100_000
FLOW = {"name": "m", "nodes": {"a": {"executor": "builtin.noop"}}}


def many_runs(sql) -> None:
    """RUNS finished runs over 10 tenants, each with its own conversation id and one of
    10 apps; one in ten has no metadata."""
    sql.execute("""
        INSERT INTO dagq.runs (id, tenant, workflow, spec, fingerprint, nodes_total,
                               nodes_remaining, status, finished_at, created_at, metadata)
        SELECT gen_random_uuid(), 't' || (i %% 10), 'bulk', '{}', 'f', 1, 0, 'succeeded',
               now(), now() - make_interval(secs => i),
               CASE WHEN i %% 10 <> 0 THEN jsonb_build_object(
                   'conversation_id', 'c-' || i, 'app', 'a' || (i %% 10), 'n', i) END
        FROM generate_series(1, %(n)s) AS i
    """, {"n": RUNS})
    sql.execute("ANALYZE dagq.runs")


def arguments(meta: dict[str, str], **overrides: Any) -> dict[str, Any]:
    return {"tenant": None, "status": None, "workflow": None, "limit": 51, "parent": None,
            "created_after": None, "created_before": None, "cursor_at": None,
            "cursor_id": None, "meta": json_path(meta),
            **overrides}


def plan_of(sql, meta: dict[str, str], **overrides: Any) -> dict[str, Any]:
    [row] = sql.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + queries()["list_runs_by_metadata"],
                        arguments(meta, **overrides)).fetchall()
    return row["QUERY PLAN"][0]


def uses_the_index(plan: dict[str, Any]) -> bool:
    text = json.dumps(plan)
    return "runs_metadata" in text and not any(
        scan["Node Type"] == "Seq Scan" for scan in scans_of(plan["Plan"], "runs"))


@pytest.mark.timeout(300)
def test_a_metadata_filter_is_an_index_scan(sql) -> None:
    many_runs(sql)
    for meta, extra in (({"conversation_id": "c-42"}, {}),
                        ({"conversation_id": "c-42"}, {"tenant": "t2"}),
                        ({"conversation_id": "c-43", "n": "43"}, {"status": "succeeded"})):
        plan = plan_of(sql, meta, **extra)
        assert uses_the_index(plan), json.dumps(plan, indent=1)
    # A value every run of the tenant has: its newest runs in order (runs_tenant_created)
    # beat the bitmap of 9,000, and the planner knows it; never a scan of every run.
    plan = plan_of(sql, {"app": "a3"}, tenant="t3", limit=11)
    assert not any(scan["Node Type"] == "Seq Scan"
                   for scan in scans_of(plan["Plan"], "runs")), json.dumps(plan, indent=1)
    assert plan["Plan"]["Actual Rows"] == 11
    # what it finds, through the index
    found = sql.execute(queries()["list_runs_by_metadata"],
                        arguments({"conversation_id": "c-43", "n": "43"})).fetchall()
    assert [(r["tenant"], r["metadata"]["n"]) for r in found] == [("t3", 43)]
    assert plan_of(sql, {"conversation_id": "c-42"})["Execution Time"] < 1000  # (ms)
    # the plan a prepared statement may switch to after five executions (PostgreSQL 15)
    generic = generic_plan(sql, queries()["list_runs_by_metadata"], json=True)
    assert uses_the_index(generic[0]["QUERY PLAN"][0]), generic


def test_filters_combine_and_a_rerun_keeps_the_metadata(repo: Store, sql) -> None:
    first = service.submit(repo, tenant="acme", workflow=FLOW,
                           metadata={"c": "c-1", "n": 5}).run_id
    service.submit(repo, tenant="globex", workflow=FLOW, metadata={"c": "c-1"})
    service.submit(repo, tenant="acme", workflow=FLOW, metadata={"c": "c-2"})
    drive(repo)
    rerun = service.rerun_run(repo, first, "acme", from_=["a"]).run_id
    assert repo.runs.get_run(rerun).metadata == {"c": "c-1", "n": 5}

    def ids(**filters: Any) -> list[Any]:
        return [run.run_id for run in repo.runs.list_runs(**{"tenant": "acme", **filters})]

    assert ids(meta={"c": "c-1"}) == [rerun, first]
    assert ids(meta={"c": "c-1", "n": "5"}, status="succeeded") == [first]
    assert ids(meta={"n": "5"}, status="running") == [rerun]  # (a rerun starts at once)
    assert len(ids(meta={"c": "c-1"}, tenant=None)) == 3
    sql.execute("UPDATE dagq.runs SET created_at = '2026-01-01T00:00:00Z' WHERE id = %s",
                (first,))
    assert ids(meta={"c": "c-1"}, created_before=datetime(2026, 1, 2, tzinfo=UTC)) == [first]
    assert ids(meta={"c": "c-1"}, created_after=datetime(2026, 1, 2, tzinfo=UTC)) == [rerun]
    [listed] = repo.runs.list_runs(tenant="acme", meta={"c": "c-2"})
    assert listed.metadata == {"c": "c-2"}
