"""POST /v1/runs/{id}/nodes/{key}/resolve and POST /v1/runs/{id}/retry {"items": "failed"}
in process: the answers, the node_resolved event naming the caller's key, and every
refusal as the contract's JSON error, writing nothing."""

from __future__ import annotations

import uuid
from typing import Any

from dagq import service
from tests.harness.api import Api, assert_error, count_rows
from tests.harness.drive import drive

FLOW = {
    "name": "resumable",
    "nodes": {
        "a": {"executor": "builtin.echo"},
        "b": {"executor": "builtin.noop", "depends_on": ["a"], "max_attempts": 1},
        "c": {"executor": "builtin.merge", "depends_on": ["b"]},
    },
}
MAPPED = {
    "name": "mapped",
    "nodes": {
        "src": {"executor": "builtin.echo", "params": {"items": [0, 1, 2, 3]}},
        "each": {"executor": "builtin.noop", "depends_on": ["src"], "max_attempts": 1,
                 "map": {"dep": "src", "path": "params.items"}},
    },
}


def boom(payload: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("broke")


def key_id(api: Api, headers: dict[str, str]) -> str:
    """The id of the key these headers carry (the `by` of what it does)."""
    key = service.authenticate(api.repo, headers["Authorization"].removeprefix("Bearer "))
    assert key is not None
    return str(key.id)


def test_resolve_through_the_api(api: Api, sql) -> None:
    run_id = api.submit(api.acme, workflow=FLOW)["run_id"]
    url = f"/v1/runs/{run_id}/nodes/b/resolve"
    assert_error(api.client.post(url, json={"outputs": {}}, headers=api.acme), 409,
                 "conflict")  # pending
    drive(api.repo, {"b": boom})
    assert api.client.get(f"/v1/runs/{run_id}", headers=api.acme).json()["status"] == \
        "failed"
    events = count_rows(sql, "run_events")
    for body, needle in [({}, "outputs"), ({"outputs": "text"}, "outputs"),
                         ({"outputs": {}, "extra": 1}, "extra"),
                         ({"outputs": {"x": "\u0000"}}, "NUL")]:
        error = assert_error(api.client.post(url, json=body, headers=api.acme), 422)
        assert needle in error["message"], (body, error)
    assert_error(api.client.post(url, content=b"{", headers=api.acme), 400)
    assert_error(api.client.post(url, json={"outputs": {}}, headers=api.globex), 404)
    assert_error(api.client.post(f"/v1/runs/{run_id}/nodes/zz/resolve",
                                 json={"outputs": {}}, headers=api.acme), 404)
    assert_error(api.client.post(f"/v1/runs/{run_id}/nodes/{'k' * 500}/resolve",
                                 json={"outputs": {}}, headers=api.acme), 404)
    assert_error(api.client.post(f"/v1/runs/{uuid.uuid4()}/nodes/b/resolve",
                                 json={"outputs": {}}, headers=api.acme), 404)
    error = assert_error(api.client.post(f"/v1/runs/{run_id}/nodes/a/resolve",
                                         json={"outputs": {}}, headers=api.acme), 409)
    assert "node 'a' is succeeded" in error["message"]
    assert count_rows(sql, "run_events") == events

    done = api.client.post(url, json={"outputs": {"fixed": True}}, headers=api.acme)
    assert done.status_code == 200, done.text
    assert done.json() == {"run_id": run_id, "node_key": "b", "status": "succeeded",
                           "run_status": "running"}
    assert drive(api.repo, {"c": lambda p: p["deps"]}) == ["c"]
    run = api.client.get(f"/v1/runs/{run_id}", headers=api.acme).json()
    assert run["status"] == "succeeded"
    assert {n["key"]: n["outputs"] for n in run["nodes"]}["c"] == {"b": {"fixed": True}}
    listed = api.client.get(f"/v1/runs/{run_id}/events?format=json",
                            headers=api.acme).json()
    [resolved] = [e for e in listed if e["type"] == "node_resolved"]
    assert resolved["node_key"] == "b"
    assert resolved["data"]["by"] == key_id(api, api.acme)
    assert resolved["data"]["status"] == "failed"
    again = api.client.post(url, json={"outputs": {}}, headers=api.acme)
    assert_error(again, 409, "conflict")


def test_retry_failed_items_through_the_api(api: Api) -> None:
    run_id = api.submit(api.acme, workflow=MAPPED)["run_id"]
    executed: list[int] = []
    broken = {2}

    def each(payload: dict[str, Any]) -> dict[str, Any]:
        executed.append(payload["item"])
        if payload["item"] in broken:
            broken.discard(payload["item"])  # fails once
            raise RuntimeError("item 2 broke")
        return {"v": payload["item"]}

    drive(api.repo, {"src": lambda p: {"params": p["params"]}, "builtin.noop": each},
          batch=64)
    url = f"/v1/runs/{run_id}/retry"
    for body in ({"items": "some"}, {"items": None}, {"extra": 1}):
        assert_error(api.client.post(url, json=body, headers=api.acme), 422)
    assert_error(api.client.post(url, json={"items": "failed"}, headers=api.globex), 404)
    retried = api.client.post(url, json={"items": "failed"}, headers=api.acme)
    assert retried.status_code == 202, retried.text
    assert retried.json() == {"run_id": run_id, "status": "running"}
    executed.clear()
    drive(api.repo, {"builtin.noop": each})
    assert executed == [2]
    run = api.client.get(f"/v1/runs/{run_id}", headers=api.acme).json()
    assert run["status"] == "succeeded"
    assert run["nodes"][1]["outputs"] == [{"v": i} for i in range(4)]
    # A retry with no body is still the whole map again.
    assert_error(api.client.post(url, headers=api.acme), 409)  # (succeeded: nothing to retry)
