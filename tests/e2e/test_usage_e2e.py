"""The cost ledger end to end: real worker processes report usage() from executors; it
is written with each attempt's outcome (failed attempts included), priced from the
tenant's table, read back per attempt; a paused worker whose lease was reclaimed (a
zombie) still records its usage, fenced, and nothing is counted twice."""

from __future__ import annotations

import os
import signal

import pytest

from dagq import service
from dagq.store import Store
from tests.harness.e2e import registered
from tests.harness.procs import WorkerFleet, wait_for, wait_for_run

pytestmark = pytest.mark.e2e

MODULES = "tests.e2e.sample_executors,tests.e2e.usage_executors"


def flow(**params) -> dict:
    return {"name": "spend", "nodes": {"llm": {"executor": "test.usage", "params": params,
                                               "backoff": {"initial_s": 0.1}}}}


def test_usage_of_every_attempt_is_recorded_priced_and_summed(
        fleet: WorkerFleet, repo: Store, sql) -> None:
    repo.usage.put_prices("acme", {"gpt-test": {"input_usd_per_mtok": 1000,
                                                "output_usd_per_mtok": 5000}})
    fleet.start(threads=2, DAGQ_ACTOR_MODULES=MODULES)
    registered(sql, "test.usage")
    run_id = service.submit(repo, tenant="acme", workflow=flow(
        calls=2, cost_usd=0.01, replies=True, fail_until=1)).run_id
    assert wait_for_run(repo, run_id).status == "succeeded"
    usage = service.get_run(repo, run_id).usage
    assert usage is not None
    per_attempt = {(a.attempt, a.model): (a.calls, a.input_tokens, a.output_tokens, a.cost_usd)
                   for a in usage.attempts}
    # 100 * 1000 / 1e6 + 20 * 5000 / 1e6 = 0.2 USD for the OpenAI-shaped reply.
    for attempt in (1, 2):  # the failed attempt's usage rode with its failure
        assert per_attempt[(attempt, "m")] == (2, 20, 10, pytest.approx(0.02))
        assert per_attempt[(attempt, "gpt-test")] == (1, 100, 20, pytest.approx(0.2))
        assert per_attempt[(attempt, "claude-test")] == (1, 55, 10, 0.0)
    assert usage.own.cost_usd == pytest.approx(0.44) and usage.fenced.cost_usd == 0
    assert usage.own.input_tokens == 2 * (20 + 100 + 55)


def test_a_zombie_attempts_usage_is_recorded_fenced_once(
        fleet: WorkerFleet, repo: Store, sql) -> None:
    fleet.start_sweeper()
    paused = fleet.start(threads=2, DAGQ_LEASE_TTL_S="1.5", DAGQ_ACTOR_MODULES=MODULES)
    registered(sql, "test.usage")
    run_id = service.submit(repo, tenant="acme", workflow=flow(
        calls=1, cost_usd=1.0, seconds=3)).run_id
    wait_for(lambda: sql.execute("SELECT 1 FROM dagq.node_tasks WHERE run_id = %s AND "
                                 "started_at IS NOT NULL", (run_id,)).fetchone(), 30,
             "attempt 1 to start")
    os.kill(paused.pid, signal.SIGSTOP)  # inside the executor, its usage buffered
    try:
        wait_for(lambda: sql.execute(
            "SELECT 1 FROM dagq.run_events WHERE run_id = %s AND type = 'node_lease_expired'",
            (run_id,)).fetchone(), 30, "the sweeper to reclaim the lease")
        fleet.start(threads=2, DAGQ_ACTOR_MODULES=MODULES)  # attempt 2 runs here
        assert wait_for_run(repo, run_id).status == "succeeded"
    finally:
        os.kill(paused.pid, signal.SIGCONT)  # attempt 1 ends: its outcome is discarded
    wait_for(lambda: sql.execute("SELECT 1 FROM dagq.node_usage WHERE run_id = %s AND "
                                 "fenced", (run_id,)).fetchone(), 30,
             "the zombie's usage to be recorded")
    usage = service.get_run(repo, run_id).usage
    assert usage is not None
    assert sorted((a.attempt, a.fenced, a.calls) for a in usage.attempts) == [
        (1, True, 1), (2, False, 1)]
    assert usage.own.cost_usd == pytest.approx(2.0)  # both spent, each once
    assert usage.fenced.cost_usd == pytest.approx(1.0)


def test_a_run_that_would_spend_3x_its_budget_stops_soon_after_passing_it(
        fleet: WorkerFleet, repo: Store, sql) -> None:
    fleet.start(threads=4, DAGQ_ACTOR_MODULES=MODULES)
    registered(sql, "test.usage")
    node = {"executor": "test.usage", "params": {"cost_usd": 0.5}}
    nodes = {f"n{i}": {**node, **({"depends_on": [f"n{i - 1}"]} if i else {})}
             for i in range(6)}  # 6 x 0.5 = 3.0: three times the budget
    failing = service.submit(repo, tenant="acme", workflow={"name": "costly", "nodes": nodes},
                             budget={"max_cost_usd": 1.0, "on_exceed": "fail"}).run_id
    going = service.submit(repo, tenant="acme", workflow={
        "name": "costly-ok", "nodes": nodes, "budget": {"max_cost_usd": 1.0,
                                                        "on_exceed": "continue"}}).run_id
    run = wait_for_run(repo, failing)
    assert run.status == "failed" and run.error["type"] == "BudgetExceeded"
    spent = service.get_run(repo, failing).usage
    # Passed by the node that spent past 1.0 (at 1.5); its completion may have handed
    # the next node to its worker before the enforcement committed: at most one more.
    assert spent is not None and 1.0 < spent.total.cost_usd <= 1.0 + 0.5 + 0.5
    assert spent.total.cost_usd < 3.0
    assert wait_for_run(repo, going).status == "succeeded"
    alerts = sql.execute("SELECT data FROM dagq.run_events WHERE run_id = %s AND "
                         "type = 'budget_exceeded'", (going,)).fetchall()
    assert [a["data"]["on_exceed"] for a in alerts] == ["continue"]
