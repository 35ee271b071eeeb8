"""POST /v1/runs/{id}/rerun in process: 201 with the new run, the run page's `rerun_of`,
and every refusal as the contract's JSON error, writing nothing."""

from __future__ import annotations

import uuid

from tests.harness.api import Api, assert_error
from tests.harness.drive import drive


def rows(sql) -> tuple[int, int, int]:
    row = sql.execute("SELECT (SELECT count(*) FROM dagq.runs) AS r, (SELECT count(*) FROM "
                      "dagq.node_tasks) AS n, (SELECT count(*) FROM dagq.run_events) AS e"
                      ).fetchone()
    return row["r"], row["n"], row["e"]


def test_rerun_through_the_api(api: Api, sql) -> None:
    run_id = api.submit(api.acme)["run_id"]
    url = f"/v1/runs/{run_id}/rerun"
    before = rows(sql)
    assert_error(api.client.post(url, json={"from": ["a"]}, headers=api.acme), 409,
                 "conflict")
    drive(api.repo)
    for body, needle in [({}, "from"), ({"from": []}, "at least 1"),
                         ({"from": ["zz"]}, "unknown node"),
                         ({"from": ["b"], "outputs": {"c": {}}}, "copied"),
                         ({"from": ["b"], "outputs": {"a": 1}}, "outputs.a"),
                         ({"from": ["b"], "outputs": [1]}, "outputs"),
                         ({"from": ["b"], "extra": 1}, "extra")]:
        error = assert_error(api.client.post(url, json=body, headers=api.acme), 422)
        assert needle in error["message"], (body, error)
    assert_error(api.client.post(url, json={"from": ["a"]}, headers=api.globex), 404)
    unknown = f"/v1/runs/{uuid.uuid4()}/rerun"
    assert_error(api.client.post(unknown, json={"from": ["a"]}, headers=api.acme), 404)
    assert rows(sql)[0] == before[0]
    created = api.client.post(url, json={"from": ["c"], "outputs": {"b": {"v": 2}}},
                              headers=api.acme)
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"run_id", "rerun_of"} and body["rerun_of"] == run_id
    assert drive(api.repo) == ["c"]
    run = api.client.get(f"/v1/runs/{body['run_id']}", headers=api.acme).json()
    assert run["status"] == "succeeded" and run["rerun_of"] == run_id
    assert {n["key"]: n["outputs"] for n in run["nodes"]}["b"] == {"v": 2}
    original = api.client.get(f"/v1/runs/{run_id}", headers=api.acme).json()
    assert original["rerun_of"] is None
