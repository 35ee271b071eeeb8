"""GET /v1/runs gives each failed run's failed node and the first line of its error (the
dashboard's runs list shows them): from the run's own error when it failed fast, from its
first failed node when it did not (such a run keeps no error of its own); never the
traceback, and nothing for a run that did not fail. Through ?id_prefix= too."""

from __future__ import annotations

from typing import Any

from tests.harness.api import Api
from tests.harness.drive import drive

FLOW = {"name": "fails", "nodes": {
    "a": {"executor": "builtin.echo"},
    "b": {"executor": "builtin.fail", "depends_on": ["a"], "max_attempts": 1},
    "c": {"executor": "builtin.echo", "depends_on": ["a"]}}}
MESSAGE = "<b>quota</b> exceeded for key k-1\n  File \"x.py\", line 3\nmore"


def boom(payload: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError(MESSAGE)


def listed(api: Api, **params: str) -> dict[str, dict[str, Any]]:
    reply = api.client.get("/v1/runs", params=params, headers=api.acme)
    assert reply.status_code == 200, reply.text
    return {r["run_id"]: r for r in reply.json()["runs"]}


def test_failed_runs_list_their_failed_node_and_first_error_line(api: Api) -> None:
    fast = api.submit(api.acme, workflow=FLOW)["run_id"]
    slow = api.submit(api.acme, workflow={**FLOW, "fail_fast": False})["run_id"]
    fine = api.submit(api.acme, workflow={**FLOW, "nodes": {"a": FLOW["nodes"]["a"]}})["run_id"]
    drive(api.repo, {"b": boom})

    runs = listed(api)
    assert runs[fast]["status"] == "failed" and runs[slow]["status"] == "partial_succeeded"
    head = {"node": "b", "type": "RuntimeError", "message": "<b>quota</b> exceeded for key k-1"}
    assert runs[fast]["error"] == head
    # fail_fast off: the run has no error of its own; its first failed node's is listed.
    assert api.client.get(f"/v1/runs/{slow}", headers=api.acme).json()["error"] is None
    assert runs[slow]["error"] == head
    assert runs[fine]["status"] == "succeeded" and runs[fine]["error"] is None
    assert listed(api, status="failed")[fast]["error"] == head
    assert listed(api, id_prefix=slow.replace("-", "")[:12])[slow]["error"] == head


def test_a_long_first_line_is_cut(api: Api) -> None:
    def long_error(payload: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("x" * 5000 + "\nsecond")

    run_id = api.submit(api.acme, workflow=FLOW)["run_id"]
    drive(api.repo, {"b": long_error})
    message = listed(api)[run_id]["error"]["message"]
    assert len(message) == 300 and message == "x" * 299 + "…"
