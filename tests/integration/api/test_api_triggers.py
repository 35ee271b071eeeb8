"""/v1/events (issue 33 item 2): an event starts the matching subscribed workflows in
the caller's tenant (201, the runs listed), a repeated event_id answers 200 with the same
runs, another tenant's event is a 404, and bad input is a 4xx that writes nothing; a
trigger that is not valid is a 422 at registration naming the problem."""

from __future__ import annotations

import pytest

from tests.harness.api import Api, assert_error, count_rows

TICKETS = {"name": "tickets", "triggers": [
    {"event": "ticket.created", "if": {"path": "payload.priority", "in": ["high", "urgent"]}}],
    "nodes": {"a": {"executor": "builtin.echo"}}}
AUDIT = {"name": "audit", "triggers": [{"event": "ticket.created"}, {"event": "ticket.closed"}],
         "nodes": {"a": {"executor": "builtin.noop"}}}


@pytest.fixture
def subscribed(api: Api) -> Api:
    for spec in (TICKETS, AUDIT):
        assert api.client.post("/v1/workflows", json=spec,
                               headers=api.admin).status_code == 201
    return api


def emit(api: Api, headers, **body):
    return api.client.post("/v1/events", json=body, headers=headers)


def test_emit_starts_the_matching_workflows_once_per_event_id(subscribed: Api, sql) -> None:
    api = subscribed
    first = emit(api, api.acme, name="ticket.created", payload={"priority": "high"},
                 event_id="T-1")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["created"] and body["tenant"] == "acme" and body["event_id"] == "T-1"
    assert [r["workflow"] for r in body["runs"]] == ["audit", "tickets"]
    run = api.client.get(f"/v1/runs/{body['runs'][1]['run_id']}", headers=api.acme).json()
    assert run["inputs"] == {"priority": "high"} and run["workflow"] == "tickets"
    again = emit(api, api.acme, name="ticket.created", payload={"priority": "high"},
                 event_id="T-1")
    assert again.status_code == 200 and not again.json()["created"]
    assert [r["run_id"] for r in again.json()["runs"]] == [r["run_id"] for r in body["runs"]]
    assert count_rows(sql, "runs") == 2
    shown = api.client.get(f"/v1/events/{body['id']}", headers=api.acme)
    assert shown.status_code == 200 and shown.json()["runs"] == body["runs"]
    assert api.client.get("/v1/events/T-1", headers=api.acme).json()["id"] == body["id"]
    assert_error(api.client.get(f"/v1/events/{body['id']}", headers=api.globex), 404)
    assert_error(api.client.get("/v1/events/T-1", headers=api.globex), 404)
    assert api.client.get(f"/v1/events/{body['id']}", headers=api.admin).status_code == 200
    assert_error(emit(api, api.acme, name="ticket.created", payload={"priority": "low"},
                      event_id="T-1"), 409, "conflict")
    low = emit(api, api.globex, name="ticket.created", payload={"priority": "low"},
               event_id="T-1").json()  # globex's own T-1
    assert [r["workflow"] for r in low["runs"]] == ["audit"]
    assert api.client.get(f"/v1/runs/{low['runs'][0]['run_id']}",
                          headers=api.acme).status_code == 404
    none = emit(api, api.acme, name="nobody.listens", payload={}).json()
    assert none["runs"] == [] and none["event_id"] == none["id"]


@pytest.mark.parametrize("body", [
    {"payload": {}}, {"name": "bad name"}, {"name": "x", "payload": [1]},
    {"name": "x", "payload": "text"}, {"name": "x", "event_id": ""},
    {"name": "x", "event_id": 5}, {"name": "x", "extra": 1},
    {"name": "x", "metadata": {"k": [1]}}, {"name": "x" * 129},
])
def test_bad_events_are_422_and_write_nothing(subscribed: Api, sql, body) -> None:
    assert_error(emit(subscribed, subscribed.acme, **body), 422)
    assert count_rows(sql, "events") == count_rows(sql, "runs") == 0


def test_malformed_and_unauthenticated(subscribed: Api, sql) -> None:
    api = subscribed
    bad = api.client.post("/v1/events", content=b"{", headers={
        **api.acme, "content-type": "application/json"})
    assert_error(bad, 400)
    assert_error(api.client.post("/v1/events", json={"name": "x"}), 401)
    assert_error(api.client.get("/v1/events/nope", headers=api.acme), 404)
    assert count_rows(sql, "events") == 0


def test_a_quota_refusal_refuses_the_event(subscribed: Api, sql) -> None:
    api = subscribed
    put = api.client.put("/v1/tenants/acme", json={"max_queued_runs": 1}, headers=api.admin)
    assert put.status_code == 200, put.text
    assert_error(emit(api, api.acme, name="ticket.created", payload={"priority": "high"}),
                 429, "quota_exceeded")
    assert count_rows(sql, "events") == count_rows(sql, "runs") == 0


@pytest.mark.parametrize("triggers, says", [
    ([{"event": "a b"}], "triggers.0.event"),
    ([{"event": "e", "if": {"path": "inputs.x", "in": [1]}}], "if.path"),
    ([{"event": "e", "if": {"path": "payload.x"}}], "in"),
    ([], "triggers"),
    ("ticket.created", "triggers"),
])
def test_invalid_triggers_are_422_at_registration(api: Api, sql, triggers, says) -> None:
    spec = {"name": "x", "triggers": triggers, "nodes": {"a": {"executor": "builtin.noop"}}}
    error = assert_error(api.client.post("/v1/workflows", json=spec, headers=api.admin), 422)
    assert says in error["message"]
    assert count_rows(sql, "workflows") == 0
