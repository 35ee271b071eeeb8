"""Group-committed submissions (issue 18) on a real Postgres: many runs in one statement,
each with its own result; a bad row or a taken event key fails only its own submission;
idempotency by (tenant, event_key) holds under a 50-way storm; a run submitted by name
uses the version that is latest when it is written."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from dagq import service
from dagq.api.submits import SubmitBatcher
from dagq.errors import Conflict, InvalidRequest
from dagq.models import SubmitResult
from dagq.service.submissions import SpecCache, SubmitRequest
from dagq.store import Store
from tests.harness.api import ECHO_FLOW, Api, count_rows

NOOP = {"name": "noop", "nodes": {"a": {"executor": "builtin.noop"}}}


def prepared(repo: Store, **fields) -> tuple:
    req = SubmitRequest(tenant=fields.pop("tenant", "acme"),
                        workflow=fields.pop("workflow", NOOP), **fields)
    return service.prepare(repo, req), req


def test_one_statement_writes_many_runs_each_with_its_own_result(repo: Store, sql) -> None:
    items = [prepared(repo, inputs={"n": 1}, event_key="k1"),
             prepared(repo, inputs={"n": 1}, event_key="k1"),  # same key, same run
             prepared(repo, inputs={"n": 2}, event_key="k1"),  # same key, other inputs
             prepared(repo, inputs={"n": 3}),
             prepared(repo, inputs={"n": 1}, event_key="k1", tenant="globex")]
    bad_run, bad_req = prepared(repo, inputs={"n": 4})
    items.insert(2, (dataclasses.replace(bad_run, inputs={"t": "nul\u0000"}), bad_req))
    outcomes = service.submit_many(repo, [r for r, _ in items], [q for _, q in items])
    first, again, bad, conflict, plain, globex = outcomes
    assert isinstance(first, SubmitResult) and first.created
    assert isinstance(again, SubmitResult) and not again.created
    assert again.run_id == first.run_id
    assert isinstance(bad, InvalidRequest) and "not storable" in bad.message
    assert isinstance(conflict, Conflict) and conflict.details == {"run_id": str(first.run_id)}
    assert isinstance(plain, SubmitResult) and plain.created
    assert isinstance(globex, SubmitResult) and globex.created
    assert globex.run_id != first.run_id
    assert count_rows(sql, "runs") == 3 and count_rows(sql, "node_tasks") == 3
    # Each new run wrote its run_queued and its root's node_queued, in that order.
    events = sql.execute("SELECT run_id, type FROM dagq.run_events ORDER BY id").fetchall()
    assert [e["type"] for e in events] == ["run_queued", "node_queued"] * 3
    assert {e["run_id"] for e in events} == {first.run_id, plain.run_id, globex.run_id}


def test_a_retried_write_finds_its_own_runs_as_created(repo: Store) -> None:
    run, _ = prepared(repo)
    [written] = repo.submissions.submit_runs([run])
    [again] = repo.submissions.submit_runs([run])  # as after a lost commit acknowledgement
    assert isinstance(again, SubmitResult) and again.created and again.run_id == written.run_id


def test_submit_by_name_uses_the_version_latest_when_written(repo: Store, sql) -> None:
    service.register_workflow(repo, NOOP)
    cache = SpecCache()
    req = SubmitRequest(tenant="acme", workflow="noop")
    stale = service.prepare(repo, req, cache)  # resolved (and cached) as version 1
    service.register_workflow(repo, {**NOOP, "nodes": {"b": {"executor": "builtin.echo"}}})
    [result] = service.submit_many(repo, [stale], [req], cache)
    assert isinstance(result, SubmitResult) and result.created
    row = sql.execute("SELECT workflow_version FROM dagq.runs WHERE id = %s",
                      [result.run_id]).fetchone()
    assert row["workflow_version"] == 2
    [node] = sql.execute("SELECT node_key FROM dagq.node_tasks").fetchall()
    assert node["node_key"] == "b"
    # A pinned version stays pinned.
    pinned = SubmitRequest(tenant="acme", workflow="noop", version=1)
    [old] = service.submit_many(repo, [service.prepare(repo, pinned, cache)], [pinned], cache)
    assert sql.execute("SELECT workflow_version FROM dagq.runs WHERE id = %s",
                       [old.run_id]).fetchone()["workflow_version"] == 1


def test_concurrent_submissions_share_one_write(repo: Store, sql) -> None:
    """Everything handed in while no write is under way goes out in one statement."""
    items = [prepared(repo, inputs={"n": i}) for i in range(50)]

    async def storm() -> list:
        batcher = SubmitBatcher(repo, SpecCache())
        batcher.start()
        try:
            results = await asyncio.gather(*(batcher.submit([run], [req])
                                             for run, req in items))
        finally:
            await batcher.stop()
        return [batcher.groups, *results]

    groups, *results = asyncio.run(storm())
    assert groups == 1
    assert all(r.created for [r] in results) and len({r.run_id for [r] in results}) == 50
    assert count_rows(sql, "runs") == 50


def test_fifty_way_event_key_storm_makes_one_run(api: Api, sql) -> None:
    def post(i: int):
        return api.client.post("/v1/runs", headers=api.acme, json={
            "workflow": ECHO_FLOW, "inputs": {"same": True}, "event_key": "storm"})

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(post, range(50)))
    assert sorted(r.status_code for r in responses) == [200] * 49 + [201]
    assert len({r.json()["run_id"] for r in responses}) == 1
    assert count_rows(sql, "runs") == 1 and count_rows(sql, "node_tasks") == 3


def test_a_bad_submission_among_concurrent_ones_fails_alone(api: Api, sql) -> None:
    api.client.post("/v1/runs", headers=api.acme, json={
        "workflow": ECHO_FLOW, "event_key": "taken", "inputs": {"v": 0}})

    def post(i: int):
        body = {"workflow": ECHO_FLOW, "inputs": {"i": i}}
        if i % 10 == 3:
            body["event_key"] = "taken"  # other inputs under a used key: 409
        if i % 10 == 7:
            body["priority"] = 10_000  # out of range: 422
        return i, api.client.post("/v1/runs", headers=api.acme, json=body)

    with ThreadPoolExecutor(40) as pool:
        responses = dict(pool.map(post, range(40)))
    expected = {i: 409 if i % 10 == 3 else 422 if i % 10 == 7 else 201 for i in range(40)}
    assert {i: r.status_code for i, r in responses.items()} == expected
    assert count_rows(sql, "runs") == 1 + 32


def test_batch_route_answers_each_item(api: Api, sql) -> None:
    items = [{"workflow": ECHO_FLOW, "inputs": {"i": 1}, "event_key": "b1"},
             {"workflow": ECHO_FLOW, "inputs": {"i": 1}, "event_key": "b1"},
             {"workflow": ECHO_FLOW, "inputs": {"i": 2}, "event_key": "b1"},
             {"workflow": "no-such-workflow"},
             {"workflow": ECHO_FLOW, "priority": "high"},
             {"workflow": {"name": "x", "nodes": {}}},
             {"workflow": ECHO_FLOW}]
    response = api.client.post("/v1/runs/batch", headers=api.acme, json={"runs": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == len(items)
    created, same, conflict, unknown, invalid, no_nodes, plain = results
    assert created["created"] is True and same == {**created, "created": False}
    assert conflict["error"]["code"] == "conflict"
    assert unknown["error"]["code"] == "not_found"
    assert invalid["error"]["code"] == "invalid_request"
    assert invalid["error"]["details"][0]["loc"][:2] == ["runs[4]", "priority"]
    assert no_nodes["error"]["code"] == "invalid_workflow"
    assert plain["created"] is True and uuid.UUID(plain["run_id"])
    assert count_rows(sql, "runs") == 2


@pytest.mark.parametrize("body", [
    {"runs": []}, {"runs": [{"workflow": "x"}] * 1001}, {"runs": {"workflow": "x"}},
    {"items": []},
    # Text Postgres cannot store refuses the whole body, as for POST /v1/runs.
    {"runs": [{"workflow": ECHO_FLOW}, {"workflow": ECHO_FLOW, "inputs": {"t": "\u0000"}}]},
])
def test_batch_route_refuses_a_bad_envelope_and_writes_nothing(api: Api, sql, body) -> None:
    response = api.client.post("/v1/runs/batch", headers=api.acme, json=body)
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"
    assert count_rows(sql, "runs") == 0


def test_batch_route_needs_a_key(api: Api) -> None:
    response = api.client.post("/v1/runs/batch", json={"runs": [{"workflow": ECHO_FLOW}]})
    assert response.status_code == 401


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE"])
def test_other_methods_on_the_batch_path_are_405(api: Api, method: str) -> None:
    response = api.client.request(method, "/v1/runs/batch", headers=api.acme)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
