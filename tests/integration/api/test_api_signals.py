"""POST /v1/runs/{run_id}/signals/{name} in process against a real Postgres, and wait
nodes in GET /v1/runs/{id}: 202 delivered or buffered, 200 for a repeated signal_id,
409 for a finished run, 404 for another tenant's, and every bad input a 4xx that
writes nothing."""

from __future__ import annotations

import uuid

import pytest

from tests.harness.api import Api, assert_error, count_rows
from tests.harness.drive import drive

APPROVAL = {
    "name": "approval",
    "nodes": {
        "draft": {"executor": "builtin.echo"},
        "approve": {"wait": {"signal": "approval", "timeout_s": 86400},
                    "depends_on": ["draft"]},
        "send": {"executor": "builtin.noop", "depends_on": ["approve"],
                 "if": {"dep": "approve", "path": "data.approved", "in": [True]}},
    },
}


def signal(api: Api, run_id: str, name: str = "approval", headers=None, **kwargs):
    return api.client.post(f"/v1/runs/{run_id}/signals/{name}",
                           headers=headers or api.acme, **kwargs)


def test_a_signal_is_delivered_to_the_waiting_node(api: Api) -> None:
    run_id = api.submit(api.acme, workflow=APPROVAL)["run_id"]
    drive(api.repo)
    run = api.client.get(f"/v1/runs/{run_id}", headers=api.acme).json()
    approve = next(n for n in run["nodes"] if n["key"] == "approve")
    assert approve["status"] == "waiting" and approve["executor"] == "dagq.wait"
    assert approve["wait"] == {"signal": "approval", "timeout_s": 86400.0}
    assert approve["wait_until"] is not None
    sent = signal(api, run_id, json={"data": {"approved": True}, "signal_id": "s-1"})
    assert sent.status_code == 202
    assert sent.json() == {"run_id": run_id, "signal": "approval", "signal_id": "s-1",
                           "delivered": True, "node_key": "approve", "duplicate": False}
    again = signal(api, run_id, json={"signal_id": "s-1"})
    assert again.status_code == 200 and again.json()["duplicate"] is True
    drive(api.repo)
    run = api.client.get(f"/v1/runs/{run_id}", headers=api.acme).json()
    assert run["status"] == "succeeded"
    assert run["outputs"] == {"send": {"key": "send"}}


def test_an_early_signal_without_a_body_is_buffered(api: Api) -> None:
    run_id = api.submit(api.acme, workflow=APPROVAL)["run_id"]
    sent = signal(api, run_id)
    assert sent.status_code == 202
    body = sent.json()
    assert body["delivered"] is False and body["node_key"] is None
    assert uuid.UUID(body["signal_id"])  # one was made up


def test_finished_foreign_and_unknown_runs(api: Api, sql) -> None:
    run_id = api.submit(api.acme, workflow=APPROVAL)["run_id"]
    assert_error(signal(api, run_id, headers=api.globex), 404, "not_found")
    assert_error(signal(api, str(uuid.uuid4())), 404, "not_found")
    assert_error(signal(api, "not-a-uuid"), 404, "not_found")
    api.client.post(f"/v1/runs/{run_id}/cancel", headers=api.acme)
    assert_error(signal(api, run_id, json={"data": {}}), 409, "conflict")
    assert count_rows(sql, "signals") == 0


@pytest.mark.parametrize(("name", "kwargs", "status"), [
    ("approval", {"content": b"{not json"}, 400),
    ("approval", {"json": {"data": [1, 2]}}, 422),
    ("approval", {"json": {"data": "yes"}}, 422),
    ("approval", {"json": {"nope": 1}}, 422),
    ("approval", {"json": {"signal_id": ""}}, 422),
    ("approval", {"json": {"signal_id": "x" * 201}}, 422),
    ("approval", {"json": {"signal_id": 7}}, 422),
    ("approval", {"json": {"data": {"a": "\u0000"}}}, 422),
    ("approval", {"json": [1]}, 422),
    ("bad name!", {"json": {}}, 422),
    ("x" * 65, {"json": {}}, 422),
])
def test_bad_input_is_a_4xx_and_writes_nothing(api: Api, sql, name, kwargs, status) -> None:
    run_id = api.submit(api.acme, workflow=APPROVAL)["run_id"]
    events = count_rows(sql, "run_events")
    assert_error(signal(api, run_id, name, **kwargs), status)
    assert count_rows(sql, "signals") == 0
    assert count_rows(sql, "run_events") == events


def test_a_signal_no_node_waits_for_is_refused(api: Api, sql) -> None:
    run_id = api.submit(api.acme, workflow=APPROVAL)["run_id"]
    body = assert_error(signal(api, run_id, "aproval", json={"data": {"approved": True}}),
                        422, "invalid_request")
    assert "waits for signal 'aproval'" in body["message"]
    assert body["details"] == {"signal": "aproval", "signals": ["approval"]}
    assert count_rows(sql, "signals") == 0


def test_waiting_nodes_are_a_gauge(api: Api) -> None:
    from tests.harness.api import samples

    for _ in range(2):
        api.submit(api.acme, workflow=APPROVAL)
    drive(api.repo)
    metrics = samples(api.client.get("/metrics").text)
    assert metrics[("dagq_nodes", (("status", "waiting"),))] == 2


def test_a_wait_spec_is_checked_on_submit(api: Api, sql) -> None:
    for bad in ({"executor": "builtin.noop", "wait": {"signal": "x"}},
                {"wait": {"signal": "x"}, "map": {"dep": "a", "path": "p"},
                 "depends_on": ["a"]},
                {"wait": {"signal": "x", "surprise": True}},
                {"wait": {"signal": "x", "timeout_s": 366 * 86400}},
                {"wait": {"until": "2026-12-24 09:00"}},
                {"wait": {"seconds": 5, "signal": "x"}}):
        wf = {"name": "bad", "nodes": {"a": {"executor": "builtin.noop"}, "w": bad}}
        assert_error(api.client.post("/v1/runs", json={"workflow": wf}, headers=api.acme),
                     422, "invalid_workflow")
    assert count_rows(sql, "runs") == 0
