"""The cost ledger on a real Postgres: usage written with the attempt's outcome (success
or failure), priced from the tenant's table, summed across attempts, map items and child
runs and charged to the run's tenant; a zombie attempt's usage kept, fenced, and never
counted twice; a rerun's saved spend; bad prices refused with nothing written."""

from __future__ import annotations

from typing import Any

import pytest

from dagq import service
from dagq.errors import InvalidRequest
from dagq.models import LeasedNode
from dagq.store import Completion, Store
from dagq.usage import UsageRecord
from tests.harness.specs import spec

PRICES = {"m1": {"input_usd_per_mtok": 2.0, "output_usd_per_mtok": 10.0}}


def used(node: LeasedNode, seq: int, model: str = "m1", inputs: int = 1000,
         outputs: int = 100, cost: float | None = None) -> UsageRecord:
    return UsageRecord(node.id, node.version, seq, node.run_id, node.node_key, node.attempts,
                       node.executor, model, inputs, outputs, cost, node.item_index)


def lease_all(repo: Store, worker: str = "w") -> list[LeasedNode]:
    return repo.leases.lease(worker=worker, queue="default", limit=100, ttl_s=30)


def succeed(repo: Store, node: LeasedNode, *usage: UsageRecord) -> bool:
    [done], _ = repo.leases.complete_and_lease(
        [Completion(node.id, node.version, {}, run_id=node.run_id, usage=usage)], None)
    return done


def ledger(sql) -> list[dict[str, Any]]:
    return sql.execute("SELECT node_key, attempt, seq, tenant, model, input_tokens, "
                       "output_tokens, cost_usd::float AS cost, fenced FROM dagq.node_usage "
                       "ORDER BY id").fetchall()


def test_usage_rides_with_success_and_failure_and_is_priced(repo: Store, sql) -> None:
    repo.usage.put_prices("acme", PRICES)
    run_id = repo.submissions.submit_run(tenant="acme", spec=spec(
        {"llm": {"executor": "builtin.noop", "max_attempts": 3}})).run_id
    [first] = lease_all(repo)
    assert repo.leases.fail(first.id, first.version, {"type": "Boom", "message": "x"},
                            usage=(used(first, 1, cost=0.5),)) == "retry"
    sql.execute("UPDATE dagq.node_tasks SET available_at = now() WHERE id = %s", (first.id,))
    [second] = lease_all(repo)
    assert succeed(repo, second, used(second, 1), used(second, 2, model="unpriced"))
    rows = ledger(sql)
    assert [(r["attempt"], r["seq"], r["model"], r["cost"], r["fenced"], r["tenant"])
            for r in rows] == [(1, 1, "m1", 0.5, False, "acme"),
                               (2, 1, "m1", 0.003, False, "acme"),  # 1000*2/1e6 + 100*10/1e6
                               (2, 2, "unpriced", None, False, "acme")]
    usage = repo.usage.run_usage(run_id)
    assert usage.own.input_tokens == 3000 and usage.own.output_tokens == 300
    assert usage.own.cost_usd == pytest.approx(0.503) and usage.total == usage.own
    assert [(a.attempt, a.model, a.calls) for a in usage.attempts] == [
        (1, "m1", 1), (2, "m1", 1), (2, "unpriced", 1)]
    assert usage.fenced.cost_usd == 0 and usage.saved is None


def test_a_zombies_usage_is_kept_fenced_and_never_counted_twice(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="acme", spec=spec(
        {"llm": {"executor": "builtin.noop", "max_attempts": 3}})).run_id
    [zombie] = lease_all(repo, "w1")
    # Its lease expires and the sweeper's reclaim makes it leasable again: attempt 2.
    sql.execute("UPDATE dagq.node_tasks SET lease_expires_at = now() - interval '1 s' "
                "WHERE id = %s", (zombie.id,))
    repo.maintenance.reclaim_expired()
    sql.execute("UPDATE dagq.node_tasks SET available_at = now() WHERE id = %s", (zombie.id,))
    [second] = lease_all(repo, "w2")
    assert second.attempts == 2
    assert succeed(repo, second, used(second, 1, cost=1.0))
    # The zombie wakes up: its completion is fenced off, its usage is still recorded.
    assert not succeed(repo, zombie, used(zombie, 1, cost=1.0))
    assert repo.usage.record_usage([used(zombie, 1, cost=1.0)]) == 0  # a flush again: once
    assert repo.usage.record_usage([used(zombie, 2, cost=0.25)]) == 1  # its later call
    rows = ledger(sql)
    assert [(r["attempt"], r["cost"], r["fenced"]) for r in rows] == [
        (2, 1.0, False), (1, 1.0, True), (1, 0.25, True)]
    usage = repo.usage.run_usage(run_id)
    assert usage.own.cost_usd == pytest.approx(2.25)  # each attempt's spend exactly once
    assert usage.fenced.cost_usd == pytest.approx(1.25)


def test_usage_sums_over_map_items_and_child_runs_of_the_right_tenant(repo: Store,
                                                                       sql) -> None:
    service.register_workflow(repo, {"name": "child", "nodes": {
        "think": {"executor": "builtin.noop"}}})
    wf = spec({"docs": {"executor": "builtin.noop"},
               "each": {"executor": "builtin.noop", "depends_on": ["docs"],
                        "map": {"dep": "docs", "path": "items"}},
               "sub": {"workflow": {"name": "child"}, "depends_on": ["each"]}}, name="parent")
    run_id = repo.submissions.submit_run(tenant="t1", spec=service.pin_subworkflows(wf, repo)
                                         ).run_id
    other = repo.submissions.submit_run(tenant="t2", spec=spec(
        {"x": {"executor": "builtin.noop"}}, name="other")).run_id
    for _ in range(10):
        nodes = lease_all(repo)
        if not nodes:
            break
        for node in nodes:
            outputs = {"items": [1, 2, 3]} if node.node_key == "docs" else {}
            [done], _ = repo.leases.complete_and_lease([Completion(
                node.id, node.version, outputs, run_id=node.run_id,
                usage=(used(node, 1, cost=0.5, inputs=10, outputs=1),))], None)
            assert done
    usage = repo.usage.run_usage(run_id)
    # docs + 3 map items (one row each) in the run itself; the child run's node below it.
    assert usage.own.cost_usd == pytest.approx(2.0) and usage.own.input_tokens == 40
    assert sorted((a.node_key, a.item_index) for a in usage.attempts) == [
        ("docs", None), ("each[0]", 0), ("each[1]", 1), ("each[2]", 2)]
    assert usage.total.cost_usd == pytest.approx(2.5) and usage.total.input_tokens == 50
    assert repo.usage.run_usage(other).total.cost_usd == pytest.approx(0.5)
    by_tenant = {r["tenant"]: float(r["cost_usd"]) for r in sql.execute(
        "SELECT tenant, sum(cost_usd) AS cost_usd FROM dagq.usage_daily GROUP BY 1")}
    assert by_tenant == {"t1": pytest.approx(2.5), "t2": pytest.approx(0.5)}


def test_a_rerun_reports_what_its_copied_nodes_saved(repo: Store) -> None:
    run_id = repo.submissions.submit_run(tenant="acme", spec=spec({
        "a": {"executor": "builtin.noop"},
        "b": {"executor": "builtin.noop", "depends_on": ["a"]}})).run_id
    for node in (lease_all(repo)[0], None):
        node = node or lease_all(repo)[0]
        assert succeed(repo, node, used(node, 1, cost=1.5 if node.node_key == "a" else 0.2))
    rerun = repo.reruns.rerun_run(run_id, None, from_=["b"]).run_id
    usage = repo.usage.run_usage(rerun)
    assert usage.saved is not None and usage.saved.cost_usd == pytest.approx(1.5)
    assert usage.own.cost_usd == 0


@pytest.mark.parametrize("prices", [
    [], {"m": 1}, {"m": {}}, {"m": {"input_usd_per_mtok": -1}},
    {"m": {"input_usd_per_mtok": "1"}}, {"m": {"per_call": 1}}, {"": {"input_usd_per_mtok": 1}},
])
def test_bad_prices_are_refused_and_nothing_written(repo: Store, sql, prices: Any) -> None:
    with pytest.raises(InvalidRequest):
        repo.usage.put_prices("acme", prices)
    assert sql.execute("SELECT count(*) AS n FROM dagq.tenant_costs").fetchone()["n"] == 0
