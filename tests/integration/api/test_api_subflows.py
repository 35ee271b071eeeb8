"""Sub-workflows over HTTP in process: registration refuses recursion and unknown
workflows (422 naming the node, nothing written), a run links its children and a child
its parent, ?parent= lists the children, tenant-scoped."""

from __future__ import annotations

from tests.harness.api import Api, assert_error, count_rows
from tests.harness.drive import drive

CHILD = {"name": "summarize", "nodes": {"s": {"executor": "builtin.echo"}}}


def test_runs_link_their_children_and_parents(api: Api) -> None:
    assert api.client.post("/v1/workflows", headers=api.admin, json=CHILD).status_code == 201
    body = {"workflow": {"name": "outer", "nodes": {
        "src": {"executor": "builtin.echo", "params": {"docs": ["a", "b"]}},
        "each": {"workflow": {"name": "summarize"}, "depends_on": ["src"],
                 "map": {"dep": "src", "path": "params.docs", "max_parallel": 1}}}}}
    run_id = api.submit(api.acme, **body)["run_id"]
    drive(api.repo, {"builtin.echo": lambda p: p})
    run = api.client.get(f"/v1/runs/{run_id}", headers=api.acme).json()
    assert run["status"] == "succeeded" and run["parent_run_id"] is None
    assert [(c["node_key"], c["item_index"], c["status"]) for c in run["children"]] == [
        ("each", 0, "succeeded"), ("each", 1, "succeeded")]
    child = api.client.get(f"/v1/runs/{run['children'][0]['run_id']}", headers=api.acme).json()
    assert (child["parent_run_id"], child["parent_node_key"]) == (run_id, "each")
    assert child["inputs"]["item"] == "a" and child["inputs"]["index"] == 0
    listed = api.client.get(f"/v1/runs?parent={run_id}", headers=api.acme).json()["runs"]
    assert sorted(r["run_id"] for r in listed) == sorted(c["run_id"] for c in run["children"])
    assert all(r["parent_run_id"] == run_id for r in listed)
    other = api.client.get(f"/v1/runs?parent={run_id}", headers=api.globex).json()
    assert other["runs"] == []
    assert_error(api.client.get(f"/v1/runs/{child['run_id']}", headers=api.globex), 404)
    assert_error(api.client.get("/v1/runs?parent=nope", headers=api.acme), 422)


def test_registration_refuses_recursion_and_unknown_workflows(api: Api, sql) -> None:
    before = count_rows(sql, "workflows")
    selfish = {"name": "loop", "nodes": {"again": {"workflow": {"name": "loop"}}}}
    error = assert_error(api.client.post("/v1/workflows", headers=api.admin, json=selfish),
                         422)
    assert "again" in error["message"] and "call itself" in error["message"]
    unknown = {"name": "w", "nodes": {"n": {"workflow": {"name": "ghost", "version": 2}}}}
    error = assert_error(api.client.post("/v1/workflows", headers=api.admin, json=unknown),
                         422)
    assert "node 'n'" in error["message"] and "ghost" in error["message"]
    both = {"workflow": {"name": "w", "nodes": {"n": {
        "workflow": {"name": "ghost"}, "executor": "builtin.echo"}}}}
    assert_error(api.client.post("/v1/runs", headers=api.acme, json=both), 422)
    assert count_rows(sql, "workflows") == before and count_rows(sql, "runs") == 0
