"""Executor options precedence through the store (issue 27 points 2 and 8): a registered
workflow, an inline spec, a sub-workflow's child run and a workflow registered before
0.3.0 all give a node its executor's declared queue, max_attempts and timeout_s unless
the node or the workflow's `defaults` (as written) set them."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg.types.json import Jsonb

from dagq import service
from dagq.models import ExecutorInfo
from dagq.spec.workflow import parse_spec, sha256_json
from dagq.store import Store
from tests.harness.api import Api
from tests.harness.drive import drive

EXECUTORS = [
    ExecutorInfo(name="llm.answer", queue="llm", max_attempts=5, timeout_s=120),
    ExecutorInfo(name="shop.score", max_attempts=2),
    ExecutorInfo(name="shop.flaky", queue="llm", max_attempts=2),
]
NODES = {"answer": {"executor": "llm.answer"}, "score": {"executor": "shop.score"}}
DECLARED = {"answer": ("llm", 5, 120.0), "score": ("default", 2, 60.0)}


@pytest.fixture(autouse=True)
def workers(repo: Store) -> None:
    repo.fleet.register_worker(worker="w", hostname="h", pid=1, queues=["default", "llm"],
                               threads=1, executors=EXECUTORS)


def options(sql, run_id) -> dict[str, tuple[str, int, float]]:
    rows = sql.execute("SELECT node_key, queue, max_attempts, timeout_s FROM dagq.node_tasks "
                       "WHERE run_id = %s", (run_id,)).fetchall()
    return {r["node_key"]: (r["queue"], r["max_attempts"], r["timeout_s"]) for r in rows}


def submit(repo: Store, workflow: Any, **extra: Any) -> Any:
    return service.submit(repo, tenant="t", workflow=workflow, **extra).run_id


def test_registered_and_inline_specs_get_the_executors_options(repo, sql) -> None:
    raw = {"name": "shop", "nodes": NODES}
    record, created = service.register_workflow(repo, raw)
    assert created and "defaults" not in record.spec
    assert options(sql, submit(repo, "shop")) == DECLARED
    assert options(sql, submit(repo, raw)) == DECLARED


def test_node_fields_then_written_defaults_then_the_executor(repo, sql) -> None:
    raw = {"name": "shop", "defaults": {"max_attempts": 4},
           "nodes": {**NODES, "pinned": {"executor": "llm.answer", "max_attempts": 9,
                                         "timeout_s": 7}}}
    service.register_workflow(repo, raw)
    expected = {"answer": ("llm", 4, 120.0), "score": ("default", 4, 60.0),
                "pinned": ("llm", 9, 7.0)}
    assert options(sql, submit(repo, "shop")) == expected
    assert options(sql, submit(repo, raw)) == expected


def test_an_inline_spec_with_a_sub_workflow_node_keeps_the_executors_options(
        repo, sql) -> None:
    """Pinning the sub-workflow's version rewrites the spec: its defaults stay unwritten."""
    service.register_workflow(repo, {"name": "child", "nodes": NODES})
    run_id = submit(repo, {"name": "outer", "nodes": {
        **NODES, "sub": {"workflow": {"name": "child"}, "depends_on": ["answer"]}}})
    assert {k: v for k, v in options(sql, run_id).items() if k != "sub"} == DECLARED


def child_options(sql, parent_id) -> dict[str, tuple[str, int, float]]:
    [child] = sql.execute("SELECT id FROM dagq.runs WHERE parent_run_id = %s",
                          (parent_id,)).fetchall()
    return options(sql, child["id"])


def test_a_sub_workflows_child_nodes_get_their_executors_options(repo, sql) -> None:
    service.register_workflow(repo, {"name": "child", "nodes": NODES})
    parent = submit(repo, {"name": "outer", "nodes": {"sub": {"workflow": {"name": "child"}}}})
    assert child_options(sql, parent) == DECLARED


def store_the_old_way(sql, raw: dict[str, Any]) -> None:
    """What register_workflow wrote before 0.3.0: defaults filled in, hashed as stored."""
    stored = parse_spec(raw).model_dump(mode="json", by_alias=True, exclude_none=True)
    sql.execute("INSERT INTO dagq.workflows (name, version, spec, spec_hash) "
                "VALUES (%s, 1, %s, %s)", (raw["name"], Jsonb(stored), sha256_json(stored)))


def test_a_workflow_registered_before_the_fix(repo, sql) -> None:
    store_the_old_way(sql, {"name": "child", "nodes": NODES})
    store_the_old_way(sql, {"name": "slow", "defaults": {"timeout_s": 30}, "nodes": NODES})
    assert options(sql, submit(repo, "child")) == DECLARED
    assert options(sql, submit(repo, "slow")) == {"answer": ("llm", 5, 30.0),
                                                  "score": ("default", 2, 30.0)}
    parent = submit(repo, {"name": "outer", "nodes": {"sub": {"workflow": {"name": "child"}}}})
    assert child_options(sql, parent) == DECLARED
    # registering the same spec again finds the old row: it reads back the same
    record, created = service.register_workflow(repo, {"name": "child", "nodes": NODES})
    assert (record.version, created) == (1, False)
    # ... unless it writes a built-in value, which the old row cannot tell: a new version
    record, created = service.register_workflow(
        repo, {"name": "child", "defaults": {"max_attempts": 3}, "nodes": NODES})
    assert (record.version, created) == (2, True)
    assert options(sql, submit(repo, "child"))["answer"] == ("llm", 3, 120.0)


def test_get_workflow_shows_the_defaults_as_written(api: Api, sql) -> None:
    posted = {"name": "shop", "defaults": {"max_attempts": 4}, "nodes": NODES}
    assert api.client.post("/v1/workflows", json=posted, headers=api.admin).status_code == 201
    store_the_old_way(sql, {"name": "legacy", "defaults": {"timeout_s": 30}, "nodes": NODES})
    shop = api.client.get("/v1/workflows/shop", headers=api.acme).json()
    assert shop["spec"]["defaults"] == {"max_attempts": 4}
    legacy = api.client.get("/v1/workflows/legacy", headers=api.acme).json()
    assert legacy["spec"]["defaults"] == {"timeout_s": 30.0}
    listed = api.client.get("/v1/workflows", headers=api.acme).json()["workflows"]
    assert {w["name"]: w["spec"].get("defaults") for w in listed} == {
        "shop": {"max_attempts": 4}, "legacy": {"timeout_s": 30.0}}


def always_fails(payload: dict[str, Any]) -> Any:
    raise RuntimeError("never works")


def test_a_registered_nodes_attempts_and_queue_come_from_its_executor(repo, sql) -> None:
    """shop.flaky (queue llm, max_attempts 2) always fails: leased on llm, twice."""
    service.register_workflow(repo, {"name": "flaky", "nodes": {
        "f": {"executor": "shop.flaky", "backoff": {"initial_s": 0, "max_s": 0}}}})
    run_id = submit(repo, "flaky")
    assert drive(repo, {"shop.flaky": always_fails}, queue="default") == []
    assert drive(repo, {"shop.flaky": always_fails}, queue="llm") == ["f", "f"]
    [node] = repo.runs.get_run(run_id).nodes
    assert (node.status, node.attempts, node.max_attempts) == ("failed", 2, 2)
