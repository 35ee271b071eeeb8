"""The set-based bulk cancel (dagq.store.bulk, issue 34 speed): a batch of runs cancelled
in one transaction writes what a cancel of each run writes (rows, events, webhook
deliveries), counts what it skipped by reason, acts once however often it is called,
never touches another tenant's runs, and does not deadlock with a worker draining the
same runs (a real worker subprocess)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import pytest

from dagq import service
from dagq.runtime.sqlfiles import queries
from dagq.store import Store
from tests.harness.plans import scans_of
from tests.harness.procs import WorkerFleet, wait_for

FLOW = {"name": "bulk", "nodes": {"a": {"executor": "builtin.noop"},
                                  "b": {"executor": "builtin.noop", "depends_on": ["a"]}}}
# Every kind of node a cancel ends: queued (a root), pending (behind it), waiting (a wait).
MIXED = {"name": "mixed", "nodes": {
    "a": {"executor": "builtin.noop"},
    "b": {"executor": "builtin.noop", "depends_on": ["a"]},
    "w": {"wait": {"signal": "go"}},
}}


def submit_many(repo: Store, tenant: str, n: int, workflow: dict[str, Any] = FLOW,
                ) -> list[uuid.UUID]:
    requests = [service.SubmitRequest(tenant=tenant, workflow=workflow) for _ in range(n)]
    outcomes = service.submit_many(repo, [service.prepare(repo, r) for r in requests],
                                   requests)
    return [o.run_id for o in outcomes]  # type: ignore[union-attr]


def cancel_in_batches(repo: Store, ids: list[uuid.UUID], tenant: str | None,
                      batch: int = 200) -> tuple[int, Counter[str]]:
    cancelled, skipped = 0, Counter[str]()
    for start in range(0, len(ids), batch):
        result = repo.bulk.cancel_runs(ids[start:start + batch], tenant)
        cancelled += len(result.cancelled)
        skipped.update(result.skipped_by())
    return cancelled, skipped


def statuses(sql, tenant: str) -> Counter[str]:
    rows = sql.execute("SELECT status, count(*) AS n FROM dagq.runs WHERE tenant = %s "
                       "GROUP BY status", (tenant,)).fetchall()
    return Counter({row["status"]: row["n"] for row in rows})


@pytest.mark.timeout(300)
def test_a_thousand_runs_cancelled_once_and_another_tenants_untouched(repo: Store,
                                                                      sql) -> None:
    acme = submit_many(repo, "acme", 1000)
    globex = submit_many(repo, "globex", 50)

    assert cancel_in_batches(repo, acme, "acme") == (1000, Counter())
    assert statuses(sql, "acme") == {"cancelled": 1000}
    nodes = sql.execute("SELECT status, count(*) AS n FROM dagq.node_tasks "
                        "WHERE tenant = 'acme' GROUP BY status").fetchall()
    assert {row["status"]: row["n"] for row in nodes} == {"cancelled": 2000}
    assert sql.execute("SELECT count(*) AS n FROM dagq.runs WHERE tenant = 'acme' "
                       "AND (nodes_remaining <> 0 OR finished_at IS NULL)").fetchone()["n"] == 0
    events = sql.execute(
        "SELECT type, count(*) AS n, count(DISTINCT run_id) AS runs FROM dagq.run_events "
        "WHERE run_id = ANY(%s) AND type IN ('node_cancelled', 'run_cancelled') GROUP BY type",
        (acme,)).fetchall()
    assert {row["type"]: (row["n"], row["runs"]) for row in events} == {
        "node_cancelled": (2000, 1000), "run_cancelled": (1000, 1000)}

    # idempotent: the same calls again act on nothing and say why
    assert cancel_in_batches(repo, acme, "acme") == (0, Counter({"already_cancelled": 1000}))
    assert sql.execute("SELECT count(*) AS n FROM dagq.run_events WHERE run_id = ANY(%s) "
                       "AND type = 'run_cancelled'", (acme,)).fetchone()["n"] == 1000
    # another tenant's runs are not found, and untouched
    assert cancel_in_batches(repo, globex, "acme") == (0, Counter({"not_found": 50}))
    assert statuses(sql, "globex") == {"queued": 50}
    assert sql.execute("SELECT count(*) AS n FROM dagq.run_events WHERE run_id = ANY(%s) "
                       "AND type LIKE '%%cancelled'", (globex,)).fetchone()["n"] == 0


def test_a_batch_cancel_writes_what_single_cancels_write(repo: Store, sql) -> None:
    repo.webhooks.insert_webhook(tenant="acme", url="https://example.com/h",
                                 events=["run_cancelled", "node_cancelled"], secret="s")
    single = submit_many(repo, "acme", 3, MIXED)
    batch = submit_many(repo, "acme", 3, MIXED)
    for run_id in single:
        repo.runs.cancel_run(run_id, "acme")
    assert repo.bulk.cancel_runs(batch, "acme").cancelled == batch

    def written(run_id: uuid.UUID) -> tuple[Any, ...]:
        run = sql.execute("SELECT status, nodes_remaining, finished_at IS NOT NULL AS ended "
                          "FROM dagq.runs WHERE id = %s", (run_id,)).fetchone()
        nodes = sql.execute("SELECT node_key, status, finished_at IS NOT NULL AS ended, "
                            "lease_expires_at FROM dagq.node_tasks WHERE run_id = %s "
                            "ORDER BY node_key", (run_id,)).fetchall()
        events = sql.execute("SELECT node_key, type, attempt, data FROM dagq.run_events "
                             "WHERE run_id = %s ORDER BY id", (run_id,)).fetchall()
        hooks = sql.execute("SELECT event, count(*) AS n FROM dagq.webhook_deliveries "
                            "WHERE run_id = %s GROUP BY event ORDER BY event",
                            (run_id,)).fetchall()
        # (the order of one run's node_cancelled events is the order the rows were
        # updated in, which neither path promises; their types' sequence is the same)
        return run, nodes, [e["type"] for e in events], sorted(map(str, events)), hooks

    expected = written(single[0])
    assert expected[0] == {"status": "cancelled", "nodes_remaining": 0, "ended": True}
    assert expected[4]  # the webhook's deliveries were written (by the events' trigger)
    for run_id in single + batch:
        assert written(run_id) == expected


@pytest.mark.timeout(300)
def test_the_batch_statements_read_through_indexes_only(repo: Store, sql) -> None:
    """Not timed: the plans. With the statistics of a small table (10,000 node rows
    written since, as after a burst of submits) the planner hashed a join over a scan of
    every node row; the statements leave it no such choice."""
    submit_many(repo, "acme", 50)
    sql.execute("ANALYZE dagq.runs, dagq.node_tasks")
    ids = submit_many(repo, "acme", 5000)[:200]
    plans = {}
    for name, params in (("cancel_nodes_of_runs", {"run_ids": ids, "tenant": "acme"}),
                         ("cancel_runs", {"run_ids": ids, "cancelled": [2] * len(ids),
                                          "tenant": "acme"})):
        with sql.transaction(force_rollback=True):
            [row] = sql.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + queries()[name],
                                params).fetchall()
        plans[name] = row["QUERY PLAN"][0]["Plan"]
    for name, plan in plans.items():
        for table in ("node_tasks", "runs"):
            reads = [(scan["Node Type"], scan.get("Index Name")) for scan in scans_of(plan, table)]
            assert ("Seq Scan", None) not in reads, (name, table, reads)
    assert plans["cancel_nodes_of_runs"]["Actual Rows"] == 400  # (each run's two nodes)


def test_finished_unknown_and_duplicate_ids_are_skipped_by_reason(repo: Store, sql) -> None:
    runs = submit_many(repo, "acme", 3)
    sql.execute("UPDATE dagq.runs SET status = 'succeeded', finished_at = now() "
                "WHERE id = %s", (runs[0],))
    unknown = uuid.uuid4()
    result = repo.bulk.cancel_runs([runs[0], runs[1], runs[1], unknown, runs[2]], None)
    assert result.cancelled == [runs[1], runs[2]]
    assert result.skipped == {runs[0]: "finished", unknown: "not_found"}
    with pytest.raises(ValueError, match="1 to 1000 run ids"):
        repo.bulk.cancel_runs([], None)


@pytest.mark.timeout(300)
def test_a_worker_draining_the_same_runs_ends_them_all(repo: Store, sql,
                                                        fleet: WorkerFleet) -> None:
    """Batches cancelled while a real worker leases, completes and releases nodes of the
    same runs: every run ends (cancelled or succeeded), nothing is left open or miscounted,
    and the worker logged no deadlock."""
    flow = {"name": "drain", "nodes": {
        "a": {"executor": "builtin.sleep", "params": {"seconds": 0.01}},
        "b": {"executor": "builtin.noop", "depends_on": ["a"]},
        "c": {"executor": "builtin.noop", "depends_on": ["a"]},
        "d": {"executor": "builtin.merge", "depends_on": ["b", "c"]}}}
    runs = submit_many(repo, "acme", 1000, flow)
    fleet.start(threads=8)
    wait_for(lambda: sql.execute("SELECT count(*) AS n FROM dagq.runs WHERE tenant = 'acme' "
                                 "AND status = 'succeeded'").fetchone()["n"] >= 50,
             60, "the worker to finish some runs")
    started = time.monotonic()
    cancelled, skipped = cancel_in_batches(repo, runs, "acme", batch=100)
    assert time.monotonic() - started < 60
    assert cancelled > 0 and cancelled + sum(skipped.values()) == 1000
    assert set(skipped) <= {"finished"}

    def settled() -> bool:
        return sql.execute("SELECT count(*) AS n FROM dagq.node_tasks WHERE tenant = 'acme' "
                           "AND status NOT IN ('succeeded', 'cancelled')").fetchone()["n"] == 0
    wait_for(settled, 60, "every node to end")
    final = statuses(sql, "acme")
    assert final["cancelled"] == cancelled and final["succeeded"] == 1000 - cancelled
    assert sql.execute("SELECT count(*) AS n FROM dagq.runs WHERE tenant = 'acme' "
                       "AND nodes_remaining <> 0").fetchone()["n"] == 0
    assert "deadlock" not in fleet.logs().lower()
