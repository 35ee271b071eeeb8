"""Sub-workflow nodes and maps over a sub-workflow (issue 17) through the store on a real
Postgres: child runs started in the releasing transaction, their end completing the
parent node (fenced), retries with a new child, cancels and deadlines over the tree,
recursion and depth limits, max_parallel and on_item_error with children, a lost worker,
and tenant isolation."""

from __future__ import annotations

from typing import Any

import pytest

from dagq import service
from dagq.config import Settings
from dagq.errors import InvalidWorkflow, NotFound
from dagq.store import Store
from dagq.sweeper import Sweeper
from dagq.workflow import parse_spec
from tests.helpers import drive, spec

ECHO = {"builtin.echo": lambda payload: payload}


def register(repo: Store, name: str, nodes: dict[str, Any], **extra: Any) -> int:
    record, _ = service.register_workflow(repo, {"name": name, "nodes": nodes, **extra})
    return record.version


def summarize(repo: Store, **extra: Any) -> int:
    """3 nodes; `fetch` fails (retryable) when the item's text says FAIL."""
    return register(repo, "summarize", {
        "fetch": {"executor": "builtin.echo", "max_attempts": 1},
        "split": {"executor": "builtin.echo", "depends_on": ["fetch"]},
        "summary": {"executor": "builtin.echo", "depends_on": ["split"]},
    }, **extra)


def doc_executor(payload: dict[str, Any]) -> Any:
    item = (payload.get("run") or {}).get("item")
    if isinstance(item, dict) and "FAIL" in item.get("text", ""):
        raise RuntimeError("cannot summarize")
    return {"text": item["text"] if isinstance(item, dict) else None}


EXECS = {"builtin.echo": lambda p: p, "fetch": doc_executor,
         "summary": lambda p: {"summary": p["deps"]["split"]["deps"]["fetch"]["text"]}}


def research(items: list[Any], **map_options: Any):
    return spec({
        "retrieve": {"executor": "builtin.echo", "params": {"docs": items}},
        "each": {"workflow": {"name": "summarize"}, "depends_on": ["retrieve"],
                 "max_attempts": 1,
                 "map": {"dep": "retrieve", "path": "params.docs", **map_options}},
        "aggregate": {"executor": "builtin.echo", "depends_on": ["each"]},
    }, name="research", fail_fast=False)


def submit(repo: Store, wf, tenant: str = "t") -> Any:
    return repo.submit_run(tenant=tenant, spec=service.pin_subworkflows(wf, repo)).run_id


def children(sql, run_id) -> list[dict[str, Any]]:
    return sql.execute("SELECT id, status, parent_node_key, parent_item_index, inputs, depth "
                       "FROM dagq.runs WHERE parent_run_id = %s ORDER BY created_at, id",
                       (run_id,)).fetchall()


def node(repo: Store, run_id, key: str):
    return next(n for n in repo.get_run(run_id).nodes if n.key == key)


def test_child_success_completes_the_node_with_the_childs_outputs(repo, sql) -> None:
    summarize(repo)
    run_id = submit(repo, spec({
        "a": {"executor": "builtin.echo", "params": {"x": 1}},
        "sub": {"workflow": {"name": "summarize"}, "depends_on": ["a"], "params": {"p": 2}},
        "after": {"executor": "builtin.echo", "depends_on": ["sub"]},
    }, name="outer"))
    drive(repo, {"a": lambda p: {"x": 1}})
    [child] = children(sql, run_id)
    assert child["parent_node_key"] == "sub" and child["depth"] == 1
    assert child["inputs"] == {"run": {}, "deps": {"a": {"x": 1}}, "params": {"p": 2}}
    run = repo.get_run(run_id)
    assert run.status == "succeeded"
    sub = node(repo, run_id, "sub")
    assert sub.outputs == repo.get_run(child["id"]).outputs
    assert "summary" in sub.outputs
    assert run.children[0].run_id == child["id"] and run.children[0].item_index is None
    view = repo.get_run(child["id"])
    assert (view.parent_run_id, view.parent_node_key) == (run_id, "sub")
    assert [r.run_id for r in repo.list_runs(tenant="t", parent=run_id)] == [child["id"]]
