"""Tenants' quotas (issue 18) on a real Postgres: GET/PUT /v1/tenants/{name} for admin
keys; over max_queued_runs or the submit rate, POST /v1/runs (and each batch item) is a
429 with Retry-After that writes nothing; the rate bucket refills with time (moved
through data: refilled_at backdated); `dagq tenants set/list`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.harness.api import ECHO_FLOW, Api, assert_error, count_rows
from tests.harness.procs import ROOT


def put(api: Api, name: str, headers=None, **body):
    return api.client.put(f"/v1/tenants/{name}", json=body, headers=headers or api.admin)


def expire_quota_cache(api: Api) -> None:
    api.app.state.specs.ttl_s = 0.0  # the next submission reads the quotas again


def test_admins_set_and_read_a_tenants_quotas(api: Api, sql) -> None:
    assert api.client.get("/v1/tenants/acme", headers=api.admin).json() == {
        "name": "acme", "weight": 1.0, "max_queued_runs": None, "max_running_nodes": None,
        "submit_rate": None, "updated_at": None, "queued_runs": None, "running_runs": None,
        "queued_nodes": None, "running_nodes": None}
    stored = put(api, "acme", weight=2, max_queued_runs=10, submit_rate=5.5)
    assert stored.status_code == 200, stored.text
    got = api.client.get("/v1/tenants/acme", headers=api.admin).json()
    assert (got["weight"], got["max_queued_runs"], got["submit_rate"]) == (2.0, 10, 5.5)
    # PUT replaces whole: what is left out is no limit again.
    put(api, "acme", weight=3)
    got = api.client.get("/v1/tenants/acme", headers=api.admin).json()
    assert (got["weight"], got["max_queued_runs"], got["submit_rate"]) == (3.0, None, None)
    assert_error(put(api, "globex", headers=api.acme, weight=2), 403, "forbidden")
    assert_error(api.client.get("/v1/tenants/acme", headers=api.acme), 403, "forbidden")
    for bad in ({"weight": 0}, {"weight": -1}, {"weight": 1e-300}, {"max_queued_runs": -1},
                {"submit_rate": 0}, {"submit_rate": 1e-50}, {"weight": "2"}, {"extra": 1}):
        assert_error(put(api, "globex", **bad), 422, "invalid_request")
    assert sql.execute("SELECT name FROM dagq.tenants").fetchall() == [{"name": "acme"}]


def test_over_max_queued_runs_is_429_and_writes_nothing(api: Api, sql) -> None:
    put(api, "acme", max_queued_runs=3)
    expire_quota_cache(api)

    def post(i: int):
        return api.client.post("/v1/runs", headers=api.acme,
                               json={"workflow": ECHO_FLOW, "inputs": {"i": i}})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(post, range(8)))
    assert sorted(r.status_code for r in responses) == [201] * 3 + [429] * 5
    refused = [r for r in responses if r.status_code == 429]
    for response in refused:
        error = assert_error(response, 429, "quota_exceeded")
        assert int(response.headers["Retry-After"]) >= 1
        assert error["details"]["tenant"] == "acme"
    assert count_rows(sql, "runs") == 3
    # Another tenant is not limited by acme's quota.
    assert api.submit(api.globex)["created"] is True
    # Runs that started no longer count as queued.
    sql.execute("UPDATE dagq.runs SET status = 'running' WHERE tenant = 'acme'")
    assert post(99).status_code == 201
    # The largest quota the API accepts is counted without overflowing.
    put(api, "acme", max_queued_runs=2**31 - 1)
    assert post(100).status_code == 201


def test_over_the_submit_rate_is_429_until_the_bucket_refills(api: Api, sql) -> None:
    put(api, "acme", submit_rate=2)  # the bucket starts full: one second of the rate
    expire_quota_cache(api)
    items = [{"workflow": ECHO_FLOW, "inputs": {"i": i}} for i in range(3)]
    results = api.client.post("/v1/runs/batch", headers=api.acme,
                              json={"runs": items}).json()["results"]
    assert [r.get("created") for r in results] == [True, True, None]
    assert results[2]["error"]["code"] == "rate_limited"
    assert results[2]["error"]["details"]["retry_after_s"] >= 1
    refused = api.client.post("/v1/runs", headers=api.acme, json=items[2])
    assert_error(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) >= 1
    assert count_rows(sql, "runs") == 2
    sql.execute("UPDATE dagq.tenants SET refilled_at = refilled_at - interval '1 second'")
    assert api.client.post("/v1/runs", headers=api.acme, json=items[2]).status_code == 201
    assert count_rows(sql, "runs") == 3


@pytest.mark.e2e
def test_cli_tenants_set_and_list(db_url: str, sql) -> None:
    env = {**os.environ, "DAGQ_DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}

    def dagq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from dagq.cli import main; raise SystemExit(main())",
             *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    done = dagq("tenants", "set", "acme", "--weight", "2", "--max-queued-runs", "100",
                "--submit-rate", "50/s")
    assert done.returncode == 0, done.stderr
    assert "weight 2, max queued runs 100, max running nodes none, submit rate 50/s" \
        in done.stdout
    listed = json.loads(dagq("tenants", "list", "--json").stdout)
    assert [(t["name"], t["weight"], t["max_queued_runs"], t["submit_rate"])
            for t in listed] == [("acme", 2.0, 100, 50.0)]
    bad = dagq("tenants", "set", "acme", "--submit-rate", "fast")
    assert bad.returncode == 2 and "runs per second" in bad.stderr
    assert sql.execute("SELECT submit_rate FROM dagq.tenants").fetchone()["submit_rate"] == 50
