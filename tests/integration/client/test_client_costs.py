"""The cost ledger from dagq.Client and dagq.AsyncClient against the real API: a submit's
budget, a run's usage, and BudgetExceeded (with retry_after) past the daily budget."""

from __future__ import annotations

import asyncio

import pytest

from dagq import AsyncClient, Client
from dagq.errors import BudgetExceeded, InvalidRequest
from dagq.store import Completion
from dagq.usage import UsageRecord
from tests.harness.live_api import LiveApi

FLOW = {"name": "f", "nodes": {"a": {"executor": "builtin.noop"}}}


def spend(api: LiveApi, cost: float) -> None:
    [n] = api.repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    api.repo.leases.complete_and_lease([Completion(n.id, n.version, {}, run_id=n.run_id, usage=(
        UsageRecord(n.id, n.version, 1, n.run_id, n.node_key, n.attempts, n.executor, "m",
                    10, 5, cost),))], None)


def test_budget_usage_and_the_daily_refusal(api: LiveApi, sql) -> None:
    api.app.state.specs.ttl_s = 0.0  # budgets and spend read at each submit
    with Client(api.url, api.acme) as client:
        with pytest.raises(InvalidRequest, match="max_cost_usd"):
            client.submit(FLOW, budget={"max_cost_usd": -1})
        run_id = client.submit(FLOW, budget={"max_cost_usd": 1, "on_exceed": "continue"}).run_id
        spec = sql.execute("SELECT spec FROM dagq.runs WHERE id = %s", (run_id,)).fetchone()
        assert spec["spec"]["budget"] == {"max_cost_usd": 1.0, "on_exceed": "continue"}
        spend(api, 2.0)
        usage = client.run(run_id).usage
        assert usage is not None and usage.total.cost_usd == 2.0
        api.repo.budgets.put_daily_budget("acme", 1.0)
        with pytest.raises(BudgetExceeded) as caught:
            client.submit(FLOW)
        assert caught.value.status == 429 and caught.value.retry_after
        assert caught.value.retry_after <= 86_400

    async def from_async() -> None:
        async with AsyncClient(api.url, api.acme) as aclient:
            with pytest.raises(BudgetExceeded):
                await aclient.submit(FLOW, budget={"max_cost_usd": 5})

    asyncio.run(from_async())
