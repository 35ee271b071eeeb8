"""Tenant safety at the HTTP edge (issue 12): /v1/workers is for admin keys, /v1/queues
counts a tenant key's own nodes, and a node may only name a queue some worker (or an
executor) has declared, at every entry point: POST /v1/runs, POST /v1/workflows,
POST /v1/schedules and `dagq submit`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dagq import service
from dagq.errors import InvalidWorkflow
from dagq.models import ExecutorInfo
from tests.harness.api import Api, assert_error, count_rows, declare_queues
from tests.harness.procs import ROOT

GPU_FLOW = {"name": "gpu-flow", "nodes": {
    "prep": {"executor": "builtin.echo"},
    "train": {"executor": "builtin.echo", "depends_on": ["prep"], "queue": "gpu"}}}
QUEUE_FIELDS = {"name", "queued", "delayed", "running", "oldest_queued_age_s",
                "failed_last_hour", "tenants"}


# ===== /v1/workers ======================================================================

def test_workers_are_shown_to_admin_keys_only(api: Api) -> None:
    declare_queues(api.repo, "default", worker="w-secret")
    error = assert_error(api.client.get("/v1/workers", headers=api.acme), 403, "forbidden")
    assert "admin" in error["message"]
    for query in ("", "?status=alive", "?limit=0"):  # no leak, whatever the query
        denied = api.client.get(f"/v1/workers{query}", headers=api.globex)
        assert denied.status_code == 403 and "host" not in denied.text
    assert_error(api.client.get("/v1/workers"), 401, "unauthorized")
    [worker] = api.client.get("/v1/workers", headers=api.admin).json()["workers"]
    assert (worker["id"], worker["hostname"], worker["pid"]) == ("w-secret", "host", 1)


def test_workers_with_auth_off_act_as_admin(db_url: str) -> None:
    with Api(db_url, auth="off") as api:
        declare_queues(api.repo, "default")
        assert len(api.client.get("/v1/workers").json()["workers"]) == 1


# ===== /v1/queues =======================================================================

def _queues(api: Api, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    response = api.client.get("/v1/queues", headers=headers)
    assert response.status_code == 200, response.text
    rows = response.json()["queues"]
    assert all(set(row) == QUEUE_FIELDS for row in rows)
    return {row["name"]: row for row in rows}


def test_a_tenant_key_counts_only_its_own_nodes(api: Api, sql) -> None:
    declare_queues(api.repo, "default", "gpu")
    for _ in range(2):
        api.submit(api.acme)  # ECHO_FLOW: one ready root on default each
    one_shot = {"name": "one", "nodes": {"x": {"executor": "builtin.echo", "queue": "gpu",
                                               "max_attempts": 1}}}
    for _ in range(3):
        api.submit(api.globex, workflow=one_shot)
    first, second = api.repo.leases.lease(worker="w", queue="gpu", limit=2, ttl_s=30)
    assert api.repo.leases.fail(first.id, first.version, {"type": "E", "message": "m"}) == "failed"

    acme = _queues(api, api.acme)
    assert (acme["default"]["queued"], acme["default"]["running"]) == (2, 0)
    idle = {"queued": 0, "delayed": 0, "running": 0, "failed_last_hour": 0,
            "oldest_queued_age_s": 0.0}
    assert {k: acme.get("gpu", {"name": "gpu", **idle})[k] for k in idle} == idle

    globex = _queues(api, api.globex)
    assert globex["default"]["queued"] == 0
    gpu = globex["gpu"]
    assert (gpu["queued"], gpu["running"], gpu["failed_last_hour"]) == (1, 1, 1)
    # the per-tenant breakdown shows a tenant key its own tenant only
    assert {t["name"] for q in (acme, globex) for row in q.values()
            for t in row["tenants"]} <= {"acme", "globex"}
    assert all(t["name"] == "globex" for row in globex.values() for t in row["tenants"])
    assert all(t["name"] == "acme" for row in acme.values() for t in row["tenants"])

    every = _queues(api, api.admin)  # an admin key counts every tenant
    assert every["default"]["queued"] == 2
    assert (every["gpu"]["queued"], every["gpu"]["running"]) == (1, 1)
    assert every["gpu"]["failed_last_hour"] == 1


# ===== a node's queue must be declared ===================================================

def _assert_unknown_queue(response: Any, node: str, queue: str) -> None:
    error = assert_error(response, 422, "invalid_workflow")
    assert error["details"] == {"node": node, "queue": queue}
    assert repr(node) in error["message"] and repr(queue) in error["message"]


def test_unknown_queue_is_422_on_every_route_and_writes_nothing(api: Api, sql) -> None:
    _assert_unknown_queue(api.client.post("/v1/runs", headers=api.acme,
                                          json={"workflow": GPU_FLOW}), "train", "gpu")
    _assert_unknown_queue(api.client.post("/v1/workflows", headers=api.admin, json=GPU_FLOW),
                          "train", "gpu")
    _assert_unknown_queue(api.client.post("/v1/schedules", headers=api.acme, json={
        "workflow": GPU_FLOW, "cron": "0 * * * *"}), "train", "gpu")
    by_default = {"name": "all-gpu", "defaults": {"queue": "gpu"},
                  "nodes": {"a": {"executor": "builtin.noop"}}}
    response = api.client.post("/v1/runs", headers=api.acme, json={"workflow": by_default})
    _assert_unknown_queue(response, "a", "gpu")
    assert "defaults.queue" in response.json()["error"]["message"]
    for table in ("runs", "node_tasks", "workflows", "schedules"):
        assert count_rows(sql, table) == 0, table
    # The node that names no queue runs on `default`, which is always known.
    api.submit(api.acme, workflow={"name": "plain", "nodes": {"a": {"executor": "builtin.noop"}}})


def test_a_declared_queue_is_accepted_at_once_and_remembered(api: Api, repo, sql) -> None:
    assert api.client.post("/v1/runs", headers=api.acme,
                           json={"workflow": GPU_FLOW}).status_code == 422
    declare_queues(api.repo, "gpu", worker="w-gpu")  # a moment after the refusal
    api.submit(api.acme, workflow=GPU_FLOW)
    assert api.client.post("/v1/workflows", headers=api.admin, json=GPU_FLOW).status_code == 201
    assert api.client.post("/v1/schedules", headers=api.acme, json={
        "workflow": "gpu-flow", "cron": "0 * * * *"}).status_code == 201
    # Every worker of the queue stopped (a deploy, an outage): still a known queue.
    api.repo.fleet.stop_worker("w-gpu")
    sql.execute("UPDATE dagq.workers SET status = 'dead'")
    api.submit(api.acme, workflow="gpu-flow")
    # Its worker rows pruned (DAGQ_RETENTION_DAYS later): the queue is forgotten and the
    # registered workflow refused (by a process that did not cache the queue list).
    sql.execute("DELETE FROM dagq.workers")
    with pytest.raises(InvalidWorkflow) as refused:
        service.submit(repo, tenant="acme", workflow="gpu-flow")
    assert refused.value.details == {"node": "train", "queue": "gpu"}


def test_an_executors_declared_queue_is_known_without_its_workers(api: Api, sql) -> None:
    api.repo.fleet.register_worker(worker="w-x", hostname="host", pid=2, queues=["default"],
                                   threads=1, executors=[ExecutorInfo(name="app.embed",
                                                                queue="embeddings")])
    sql.execute("DELETE FROM dagq.workers")
    flow = {"name": "embed", "nodes": {"a": {"executor": "app.embed"},
                                       "b": {"executor": "builtin.noop",
                                             "queue": "embeddings"}}}
    api.submit(api.acme, workflow=flow)
    queues = sql.execute("SELECT node_key, queue FROM dagq.node_tasks ORDER BY node_key")
    assert [(r["node_key"], r["queue"]) for r in queues] == [("a", "embeddings"),
                                                             ("b", "embeddings")]


@pytest.mark.e2e
def test_cli_submit_refuses_an_unknown_queue(db_url: str, sql, tmp_path: Path) -> None:
    spec = tmp_path / "gpu.json"
    spec.write_text(json.dumps(GPU_FLOW))
    env = {**os.environ, "DAGQ_DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", "from dagq.cli import main; raise SystemExit(main())",
         "submit", str(spec)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "dagq: error: node 'train' uses unknown queue 'gpu'; no worker has declared it "
        "(start one with `dagq worker --queues gpu`)")
    assert count_rows(sql, "runs") == 0
