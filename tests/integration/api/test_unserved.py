"""Runs that no live worker can serve say so (issue 12): GET /v1/runs/{id} carries an
`unserved` warning per executor and queue, and /readyz counts live workers (200 either
way: the API is ready without them). Liveness comes from dagq.workers rows, arranged
here as data (a heartbeat backdated instead of waited for)."""

from __future__ import annotations

import uuid

from dagq import service
from dagq.api.routes.ops import NO_WORKER_WARNING
from dagq.models import ExecutorInfo
from tests.harness.api import Api


def worker(api: Api, name: str, executors: list[str], queues: list[str]) -> None:
    api.repo.fleet.register_worker(
        worker=name, hostname="h", pid=1, queues=queues, threads=1, heartbeat_s=1.0,
        executors=[ExecutorInfo(name=e, queue=queues[0]) for e in executors])


def warnings_of(api: Api, run_id: str) -> list[dict]:
    response = api.client.get(f"/v1/runs/{run_id}", headers=api.acme)
    assert response.status_code == 200
    return response.json()["warnings"]


FLOW = {"name": "two", "nodes": {
    "a": {"executor": "test.summarise"},
    "b": {"executor": "builtin.echo", "depends_on": ["a"]},
    "s": {"executor": "builtin.noop", "queue": "side"},
}}


def test_a_run_no_live_worker_serves_says_so(api: Api, sql) -> None:
    worker(api, "w1", ["test.summarise", "builtin.echo", "builtin.noop"], ["default", "side"])
    run_id = api.submit(api.acme, workflow=FLOW)["run_id"]
    assert warnings_of(api, run_id) == []

    # The worker's module lost test.summarise and it restarted serving only the built-ins.
    api.repo.fleet.stop_worker("w1")
    worker(api, "w2", ["builtin.echo", "builtin.noop"], ["default", "side"])
    [warning] = warnings_of(api, run_id)
    assert warning == {
        "code": "unserved", "executor": "test.summarise", "queue": "default", "waiting": 1,
        "nodes": ["a"],
        "message": "no live worker serves executor test.summarise on queue default: "
                   "1 node(s) wait (a); start a worker that does"}

    # Then the workers went away (no heartbeat for long): every waiting node is unserved.
    sql.execute("UPDATE dagq.workers SET heartbeat_at = now() - interval '1 minute'")
    found = {(w["executor"], w["queue"]): w["nodes"] for w in warnings_of(api, run_id)}
    assert found == {("test.summarise", "default"): ["a"], ("builtin.echo", "default"): ["b"],
                     ("builtin.noop", "side"): ["s"]}
    body = api.client.get("/readyz").json()
    assert body["status"] == "ready" and body["workers"] == 0
    assert body["warnings"] == [NO_WORKER_WARNING]

    sql.execute("UPDATE dagq.workers SET heartbeat_at = now() WHERE id = 'w2'")
    assert api.client.get("/readyz").json()["workers"] == 1
    assert len(warnings_of(api, run_id)) == 1


def test_a_worker_on_other_queues_does_not_count(api: Api) -> None:
    worker(api, "w1", ["builtin.noop", "builtin.echo"], ["other"])
    run_id = api.submit(api.acme, workflow={"name": "q", "nodes": {
        "x": {"executor": "builtin.noop", "queue": "default"}}})["run_id"]
    [warning] = warnings_of(api, run_id)
    assert (warning["executor"], warning["queue"]) == ("builtin.noop", "default")


def test_finished_runs_and_plain_actors_have_no_warning(api: Api) -> None:
    worker(api, "w1", ["builtin.echo", "builtin.merge"], ["default"])
    run_id = api.submit(api.acme)["run_id"]
    assert warnings_of(api, run_id) == []
    api.repo.fleet.stop_worker("w1")
    api.repo.runs.cancel_run(uuid.UUID(run_id), "acme")
    assert warnings_of(api, run_id) == []  # terminal: nothing waits

    # A plain Dramatiq actor (actor.send) is not listed by workers: its queue decides.
    from tests.harness.specs import spec
    plain = api.repo.submissions.submit_run(tenant="acme", spec=spec(
        {"add": {"executor": "add", "params": {"args": [1, 2]}}}, name="add")).run_id
    worker(api, "w3", ["builtin.echo"], ["default"])
    assert service.get_run(api.repo, plain).warnings == []
    api.repo.fleet.stop_worker("w3")
    [warning] = service.get_run(api.repo, plain).warnings
    assert warning.executor == "add"
