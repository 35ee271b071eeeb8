"""Budgets on a real Postgres: spend charged from usage as it is written (the run's own
and its ancestors'), each policy enforced once the charge commits (fail: the run fails
with BudgetExceeded, what has not started is cancelled; continue: one budget_exceeded
event), a zombie's usage charged once, the sweeper's pass for a charge whose process
died before enforcing it, and the tenant's spend today."""

from __future__ import annotations

from typing import Any

import pytest

from dagq import service
from dagq.models import LeasedNode
from dagq.store import Completion, Store
from dagq.usage import UsageRecord
from tests.harness.specs import spec


def chain(policy: str, limit: float = 1.0, width: int = 3) -> Any:
    nodes = {f"n{i}": {"executor": "builtin.noop", **({"depends_on": [f"n{i - 1}"]} if i else {})}
             for i in range(width)}
    return spec(nodes, name="chain", budget={"max_cost_usd": limit, "on_exceed": policy})


def spend(node: LeasedNode, cost: float, seq: int = 1) -> UsageRecord:
    return UsageRecord(node.id, node.version, seq, node.run_id, node.node_key, node.attempts,
                       node.executor, "m", 100, 10, cost, node.item_index)


def run_each(repo: Store, cost: float, rounds: int = 10) -> list[str]:
    """Lease and complete whatever is ready, each node spending `cost`."""
    started = []
    for _ in range(rounds):
        nodes = repo.leases.lease(worker="w", queue="default", limit=10, ttl_s=30)
        if not nodes:
            break
        for node in nodes:
            started.append(node.node_key)
            repo.leases.complete_and_lease([Completion(
                node.id, node.version, {}, run_id=node.run_id, usage=(spend(node, cost),))],
                None)
    return started


def budget_events(sql, run_id) -> list[dict[str, Any]]:
    return [r["data"] for r in sql.execute(
        "SELECT data FROM dagq.run_events WHERE run_id = %s AND type = 'budget_exceeded'",
        (run_id,))]


def test_fail_stops_the_run_within_one_nodes_spend(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="acme", spec=chain("fail", width=5)).run_id
    started = run_each(repo, 0.6)  # would spend 3.0 (3x the budget) without it
    assert started == ["n0", "n1"]  # n1 took the spend to 1.2: nothing more started
    run = repo.runs.get_run(run_id)
    assert run.status == "failed" and run.error["type"] == "BudgetExceeded"
    assert "1.2 USD" in run.error["message"]
    statuses = {n.key: n.status for n in run.nodes or []}
    assert statuses == {"n0": "succeeded", "n1": "succeeded", "n2": "cancelled",
                        "n3": "cancelled", "n4": "cancelled"}
    assert budget_events(sql, run_id) == [{"max_cost_usd": 1.0, "spent_usd": 1.2,
                                           "on_exceed": "fail"}]
    row = sql.execute("SELECT spent_usd::float AS spent, exceeded_at IS NOT NULL AS exceeded, "
                      "enforced_at IS NOT NULL AS enforced FROM dagq.run_budgets").fetchone()
    assert row == {"spent": pytest.approx(1.2), "exceeded": True, "enforced": True}


def test_continue_alerts_once_and_goes_on(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="acme", spec=chain("continue")).run_id
    assert run_each(repo, 0.6) == ["n0", "n1", "n2"]
    assert repo.runs.get_run(run_id).status == "succeeded"
    assert budget_events(sql, run_id) == [{"max_cost_usd": 1.0, "spent_usd": 1.2,
                                           "on_exceed": "continue"}]


def test_under_budget_and_unbudgeted_runs_are_left_alone(repo: Store, sql) -> None:
    within = repo.submissions.submit_run(tenant="acme", spec=chain("fail", limit=5)).run_id
    free = repo.submissions.submit_run(tenant="acme", spec=spec(
        {"a": {"executor": "builtin.noop"}}, name="free")).run_id
    run_each(repo, 1.0)
    assert repo.runs.get_run(within).status == "succeeded"
    assert repo.runs.get_run(free).status == "succeeded"
    assert sql.execute("SELECT run_id, spent_usd::float AS s FROM dagq.run_budgets"
                       ).fetchall() == [{"run_id": within, "s": 3.0}]


def test_a_failed_attempts_usage_and_a_zombies_are_charged_once(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="acme", spec=chain("fail", width=1)).run_id
    [first] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    assert repo.leases.fail(first.id, first.version, {"type": "Boom", "message": "x"},
                            usage=(spend(first, 0.4),)) == "retry"
    assert repo.usage.record_usage([spend(first, 0.4)]) == 0  # again: not charged twice
    assert repo.usage.record_usage([spend(first, 0.4, seq=2)]) == 1  # a zombie's late call
    assert repo.runs.get_run(run_id).status == "running"  # 0.8: under 1.0
    assert repo.usage.record_usage([spend(first, 0.3, seq=3)]) == 1  # 1.1: past it
    run = repo.runs.get_run(run_id)
    assert run.status == "failed" and run.error["type"] == "BudgetExceeded"


def test_a_child_runs_spend_counts_against_its_parents_budget(repo: Store, sql) -> None:
    service.register_workflow(repo, {"name": "child", "nodes": {
        "think": {"executor": "builtin.noop"},
        "more": {"executor": "builtin.noop", "depends_on": ["think"]},
        "last": {"executor": "builtin.noop", "depends_on": ["more"]}}})
    wf = spec({"sub": {"workflow": {"name": "child"}}}, name="parent",
              budget={"max_cost_usd": 1.0})
    run_id = repo.submissions.submit_run(tenant="acme",
                                         spec=service.pin_subworkflows(wf, repo)).run_id
    assert run_each(repo, 0.7) == ["think", "more"]  # 1.4: the parent's budget passed
    run = repo.runs.get_run(run_id)
    assert run.status == "failed" and run.error["type"] == "BudgetExceeded"
    assert repo.usage.run_usage(run_id).total.cost_usd == pytest.approx(1.4)
    child = sql.execute("SELECT status FROM dagq.runs WHERE parent_run_id = %s",
                        (run_id,)).fetchone()
    assert child["status"] in ("failed", "cancelled")  # stopped with its parent


def test_the_sweeper_enforces_a_budget_its_charger_left(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="acme", spec=chain("fail")).run_id
    [node] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    # As if the process died after the charge committed: passed, not enforced.
    sql.execute("INSERT INTO dagq.run_budgets (run_id, tenant, max_cost_usd, on_exceed, "
                "spent_usd, exceeded_at) VALUES (%s, 'acme', 1, 'fail', 2, now())", (run_id,))
    assert repo.budgets.enforce_passed_budgets(grace_s=3600) == 0  # too fresh: its own
    assert repo.budgets.enforce_passed_budgets(grace_s=0) == 1
    assert repo.budgets.enforce_passed_budgets(grace_s=0) == 0  # once
    run = repo.runs.get_run(run_id)
    assert run.status == "failed" and run.error["type"] == "BudgetExceeded"
    # The node still running is told to stop at its next heartbeat.
    beat = repo.leases.heartbeat(worker="w", node_ids=[node.id], ttl_s=30)
    assert node.id in beat.stop | beat.lost


def test_a_tenants_spend_today_and_daily_budget(repo: Store) -> None:
    repo.submissions.submit_run(tenant="acme", spec=spec({"a": {"executor": "builtin.noop"}}))
    run_each(repo, 0.25)
    spent, day_left = repo.budgets.spent_today("acme")
    assert spent == pytest.approx(0.25) and 0 < day_left <= 86_400
    assert repo.budgets.spent_today("globex")[0] == 0
    assert repo.budgets.daily_budgets() == {}
    repo.budgets.put_daily_budget("acme", 10)
    assert repo.budgets.daily_budgets() == {"acme": 10.0}
    repo.budgets.put_daily_budget("acme", None)
    assert repo.budgets.daily_budgets() == {}
