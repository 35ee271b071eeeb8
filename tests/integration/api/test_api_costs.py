"""The cost ledger and budgets over HTTP: GET /v1/runs/{id} shows usage per attempt and
the totals; /v1/tenants/{name}/costs sets and reads prices and the daily budget (admin
keys; bad input 422, nothing written); a submit's `budget` is checked (422, nothing
written) and kept on the run; past the tenant's daily budget, POST /v1/runs and each
batch item get 429 budget_exceeded with Retry-After at the end of the UTC day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dagq.api import metrics_usage
from dagq.store import Completion
from dagq.usage import UsageRecord
from tests.harness.api import ECHO_FLOW, Api, assert_error, count_rows, samples


def costs(api: Api, name: str, headers=None, **body):
    return api.client.put(f"/v1/tenants/{name}/costs", json=body, headers=headers or api.admin)


def spend_on_first_node(api: Api, cost: float | None, model: str = "m") -> None:
    [node] = api.repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    api.repo.leases.complete_and_lease([Completion(node.id, node.version, {}, run_id=node.run_id,
                                                   usage=(UsageRecord(
        node.id, node.version, 1, node.run_id, node.node_key, node.attempts, node.executor,
        model, 1000, 200, cost),))], None)


def test_a_runs_usage_is_shown_per_attempt_with_totals(api: Api) -> None:
    costs(api, "acme", prices={"m": {"input_usd_per_mtok": 1, "output_usd_per_mtok": 5}})
    run_id = api.submit(api.acme)["run_id"]
    spend_on_first_node(api, None)
    usage = api.client.get(f"/v1/runs/{run_id}", headers=api.acme).json()["usage"]
    assert usage["attempts"] == [{"node_key": "a", "item_index": None, "attempt": 1,
                                  "model": "m", "calls": 1, "input_tokens": 1000,
                                  "output_tokens": 200, "cost_usd": 0.002, "fenced": False}]
    assert usage["own"] == usage["total"] == {"input_tokens": 1000, "output_tokens": 200,
                                               "cost_usd": 0.002}
    assert usage["saved"] is None and usage["fenced"]["cost_usd"] == 0


def test_admins_set_prices_and_the_daily_budget(api: Api, sql) -> None:
    empty = api.client.get("/v1/tenants/acme/costs", headers=api.admin).json()
    assert empty == {"tenant": "acme", "prices": {}, "daily_cost_usd": None,
                     "spent_today_usd": 0.0, "updated_at": None}
    stored = costs(api, "acme", prices={"m": {"input_usd_per_mtok": 2}}, daily_cost_usd=5)
    assert stored.status_code == 200, stored.text
    assert stored.json()["daily_cost_usd"] == 5.0
    # What is left out is kept; null removes the daily budget.
    assert costs(api, "acme", daily_cost_usd=7).json()["prices"] == {
        "m": {"input_usd_per_mtok": 2.0}}
    got = costs(api, "acme", daily_cost_usd=None).json()
    assert got["daily_cost_usd"] is None and got["prices"] == {"m": {"input_usd_per_mtok": 2.0}}
    assert_error(costs(api, "acme", headers=api.acme, daily_cost_usd=1), 403, "forbidden")
    assert_error(api.client.get("/v1/tenants/acme/costs", headers=api.acme), 403, "forbidden")
    for bad in ({"daily_cost_usd": 0}, {"daily_cost_usd": -1}, {"daily_cost_usd": "5"},
                {"prices": {"m": {"input_usd_per_mtok": -1}}}, {"prices": {"m": {"x": 1}}},
                {"prices": []}, {"extra": 1}):
        assert_error(costs(api, "globex", **bad), 422, "invalid_request")
    assert sql.execute("SELECT tenant FROM dagq.tenant_costs").fetchall() == [
        {"tenant": "acme"}]


def test_a_submits_budget_is_checked_and_kept(api: Api, sql) -> None:
    for bad in ({"max_cost_usd": 0}, {"max_cost_usd": -1}, {"on_exceed": "fail"},
                {"max_cost_usd": 1, "on_exceed": "explode"}, {"max_cost_usd": 1, "x": 1}, 5):
        response = api.client.post("/v1/runs", json={"workflow": ECHO_FLOW, "budget": bad},
                                   headers=api.acme)
        assert_error(response, 422, "invalid_request")
    assert count_rows(sql, "runs") == 0
    bad_spec = {**ECHO_FLOW, "budget": {"max_cost_usd": "1"}}
    assert_error(api.client.post("/v1/runs", json={"workflow": bad_spec}, headers=api.acme),
                 422)
    run_id = api.submit(api.acme, budget={"max_cost_usd": 2.5, "on_exceed": "continue"})[
        "run_id"]
    spec = sql.execute("SELECT spec FROM dagq.runs WHERE id = %s", (run_id,)).fetchone()["spec"]
    assert spec["budget"] == {"max_cost_usd": 2.5, "on_exceed": "continue"}


def test_past_the_daily_budget_submits_get_429_until_the_day_ends(api: Api, sql) -> None:
    api.app.state.specs.ttl_s = 0.0
    costs(api, "acme", daily_cost_usd=1.0)
    api.submit(api.acme)
    spend_on_first_node(api, 1.5)
    before = count_rows(sql, "runs")
    response = api.client.post("/v1/runs", json={"workflow": ECHO_FLOW}, headers=api.acme)
    error = assert_error(response, 429, "budget_exceeded")
    assert error["details"] == {"daily_cost_usd": 1.0, "spent_today_usd": 1.5}
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert int(response.headers["Retry-After"]) == pytest.approx(
        (midnight - now).total_seconds(), abs=5)
    batch = api.client.post("/v1/runs/batch", json={"runs": [{"workflow": ECHO_FLOW}]},
                            headers=api.acme).json()["results"]
    assert batch[0]["error"]["code"] == "budget_exceeded"
    assert count_rows(sql, "runs") == before  # nothing written
    assert api.client.post("/v1/runs", json={"workflow": ECHO_FLOW},
                           headers=api.globex).status_code == 201  # another tenant: fine
    # Raised: submits go on (the budgets and spend are read again: ttl_s 0 here).
    costs(api, "acme", daily_cost_usd=10)
    assert api.client.post("/v1/runs", json={"workflow": ECHO_FLOW},
                           headers=api.acme).status_code == 201


def test_metrics_count_tokens_and_cost_per_tenant_and_model(api: Api, monkeypatch) -> None:
    api.client.get("/metrics")  # the counters start here
    api.submit(api.acme)
    spend_on_first_node(api, 0.25, model="gpt-x")
    m = samples(api.client.get("/metrics").text)
    pair = (("model", "gpt-x"), ("tenant", "acme"))
    assert m[("dagq_llm_tokens_total", (("kind", "input"), *pair))] == 1000
    assert m[("dagq_llm_tokens_total", (("kind", "output"), *pair))] == 200
    assert m[("dagq_llm_cost_usd_total", pair)] == pytest.approx(0.25)
    # Past the cap on (tenant, model) pairs, new ones are counted as other/other.
    monkeypatch.setattr(metrics_usage, "MAX_SERIES", 1)
    api.submit(api.globex)
    spend_on_first_node(api, 0.5, model="y" * 150)
    m = samples(api.client.get("/metrics").text)
    assert m[("dagq_llm_cost_usd_total", (("model", "other"), ("tenant", "other")))] == 0.5
    assert m[("dagq_llm_cost_usd_total", pair)] == pytest.approx(0.25)  # counted once
