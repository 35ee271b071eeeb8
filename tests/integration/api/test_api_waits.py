"""Waits for a person over HTTP in process (issue 33 item 4; docs/forms.md): open waits
listed with their forms and a fresh respond link each (a run's, its child runs' inside a
map over a sub-workflow, a tenant's), the data checked against the form (422 naming the
field, nothing written) by the signal route and by a respond link, and a respond link
that answers its own wait once, with no API key: used, expired, closed -> 410."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from dagq.sweeper.passes import Sweeper
from tests.harness.api import Api, assert_error, count_rows
from tests.harness.drive import drive
from tests.harness.receiver import Receiver

FORM: dict[str, Any] = {
    "title": "Approve the refund",
    "properties": {
        "approved": {"type": "boolean"},
        "amount": {"type": "number", "maximum": 1000},
        "note": {"type": "string", "default": ""},
    },
    "required": ["approved"],
}
APPROVAL = {"name": "refund", "nodes": {
    "draft": {"executor": "builtin.echo"},
    "approve": {"depends_on": ["draft"], "wait": {
        "signal": "approval", "form": FORM, "assignees": ["ann", "bob"]}},
    "send": {"executor": "builtin.noop", "depends_on": ["approve"],
             "if": {"dep": "approve", "path": "data.approved", "in": [True]}}}}


def waiting_run(api: Api, headers=None, workflow=APPROVAL) -> str:
    run_id = api.submit(headers or api.acme, workflow=workflow)["run_id"]
    drive(api.repo)
    return run_id


def waits(api: Api, run_id: str, headers=None) -> list[dict[str, Any]]:
    reply = api.client.get(f"/v1/runs/{run_id}/waits", headers=headers or api.acme)
    assert reply.status_code == 200, reply.text
    return reply.json()["waits"]


def respond(api: Api, token: str, data: dict[str, Any]):
    return api.client.post(f"/v1/respond/{token}", json={"data": data})  # no key


def status(api: Api, run_id: str) -> str:
    return api.client.get(f"/v1/runs/{run_id}", headers=api.admin).json()["status"]


def test_a_wait_is_listed_with_its_form_and_answered_once_by_its_link(api: Api, sql) -> None:
    run_id = waiting_run(api)
    [wait] = waits(api, run_id)
    assert (wait["run_id"], wait["node_key"], wait["signal"]) == (run_id, "approve", "approval")
    assert wait["form"] == FORM and wait["assignees"] == ["ann", "bob"]
    token = wait["respond"]["token"]
    assert wait["respond"]["path"] == f"/respond/{token}"
    # Only the token's hash is stored.
    [stored] = sql.execute("SELECT token_hash, issued_to FROM dagq.respond_links").fetchall()
    assert bytes(stored["token_hash"]) != token.encode()
    assert token not in str(sql.execute("SELECT * FROM dagq.respond_links").fetchall())
    shown = api.client.get(f"/v1/respond/{token}")
    assert shown.status_code == 200 and shown.json()["form"] == FORM
    answered = respond(api, token, {"approved": True, "amount": 12})
    assert answered.status_code == 200, answered.text
    assert answered.json()["node_key"] == "approve"
    drive(api.repo)
    assert status(api, run_id) == "succeeded"
    run = api.client.get(f"/v1/runs/{run_id}", headers=api.acme).json()
    approve = next(n for n in run["nodes"] if n["key"] == "approve")
    assert approve["outputs"]["data"] == {"approved": True, "amount": 12, "note": ""}
    assert_error(respond(api, token, {"approved": False}), 410, "link_used")
    assert_error(api.client.get(f"/v1/respond/{token}"), 410, "link_used")
    assert count_rows(sql, "signals") == 1
    assert waits(api, run_id) == []


@pytest.mark.parametrize(("data", "field"), [
    ({}, "approved"), ({"approved": "yes"}, "approved"),
    ({"approved": True, "amount": 5000}, "amount"), ({"approved": True, "note": 3}, "note")])
def test_data_that_does_not_fit_the_form_is_a_422_naming_the_field(
        api: Api, sql, data: dict[str, Any], field: str) -> None:
    run_id = waiting_run(api)
    [wait] = waits(api, run_id)
    error = assert_error(respond(api, wait["respond"]["token"], data), 422, "invalid_request")
    assert error["details"] == {"field": field, "node": "approve"} and field in error["message"]
    error = assert_error(api.client.post(f"/v1/runs/{run_id}/signals/approval",
                                         json={"data": data}, headers=api.acme), 422)
    assert error["details"]["field"] == field
    assert count_rows(sql, "signals") == 0
    assert sql.execute("SELECT count(*) AS n FROM dagq.respond_links "
                       "WHERE used_at IS NOT NULL").fetchone()["n"] == 0
    assert status(api, run_id) == "running"
    # The signal route takes data that fits, with the defaults filled in.
    sent = api.client.post(f"/v1/runs/{run_id}/signals/approval",
                           json={"data": {"approved": False}}, headers=api.acme)
    assert sent.status_code == 202 and sent.json()["delivered"] is True


def test_an_expired_link_and_a_closed_wait_are_410(api: Api, sql) -> None:
    run_id = waiting_run(api)
    [first] = waits(api, run_id)
    [second] = waits(api, run_id)  # every listing mints a fresh link: both work
    assert first["respond"]["token"] != second["respond"]["token"]
    sql.execute("UPDATE dagq.respond_links SET created_at = now() - interval '2 hours', "
                "expires_at = now() - interval '1 hour'")
    assert_error(respond(api, first["respond"]["token"], {"approved": True}), 410,
                 "link_expired")
    [third] = waits(api, run_id)
    assert api.client.post(f"/v1/runs/{run_id}/cancel", headers=api.acme).status_code == 202
    assert_error(respond(api, third["respond"]["token"], {"approved": True}), 410,
                 "wait_closed")
    assert count_rows(sql, "signals") == 0


def test_a_link_answers_its_own_run_only(api: Api) -> None:
    mine, other = waiting_run(api), waiting_run(api)
    [wait] = waits(api, mine)
    assert respond(api, wait["respond"]["token"], {"approved": True}).status_code == 200
    drive(api.repo)
    assert (status(api, mine), status(api, other)) == ("succeeded", "running")
    [still] = waits(api, other, headers=api.admin)
    assert still["run_id"] == other
    for token in ("nope", "dqr_" + "x" * 43, "a" * 300, "dqr_!!!!!!!!!!!!!!!!!!!!"):
        assert_error(respond(api, token, {"approved": True}), 404)
        assert_error(api.client.get(f"/v1/respond/{token}"), 404)


def test_waits_inside_a_map_over_a_sub_workflow_each_have_their_own_link(api: Api) -> None:
    child = {"name": "review", "nodes": {"ok": {"wait": {"signal": "ok", "form": FORM}}}}
    assert api.client.post("/v1/workflows", headers=api.admin, json=child).status_code == 201
    outer = {"name": "outer", "nodes": {
        "src": {"executor": "builtin.echo", "params": {"docs": ["a", "b"]}},
        "each": {"workflow": {"name": "review"}, "depends_on": ["src"],
                 "map": {"dep": "src", "path": "params.docs"}}}}
    run_id = api.submit(api.acme, workflow=outer)["run_id"]
    drive(api.repo, {"builtin.echo": lambda p: p})
    listed = waits(api, run_id)
    assert len(listed) == 2 and {w["parent_run_id"] for w in listed} == {run_id}
    assert len({w["run_id"] for w in listed}) == 2 and run_id not in {w["run_id"] for w in listed}
    assert len({w["respond"]["token"] for w in listed}) == 2
    for wait in listed:
        assert respond(api, wait["respond"]["token"], {"approved": True}).status_code == 200
    drive(api.repo, {"builtin.echo": lambda p: p})
    assert status(api, run_id) == "succeeded"


def test_waits_are_listed_per_tenant_and_by_assignee(api: Api, sql) -> None:
    acme_run = waiting_run(api)
    globex_run = waiting_run(api, api.globex)

    def listed(headers, **params) -> list[str]:
        reply = api.client.get("/v1/waits", params={**params, "links": "false"},
                               headers=headers)
        assert reply.status_code == 200, reply.text
        assert all(w["respond"] is None for w in reply.json()["waits"])
        return [w["run_id"] for w in reply.json()["waits"]]

    assert listed(api.acme) == [acme_run]
    assert listed(api.globex) == [globex_run]
    assert listed(api.globex, tenant="acme") == [globex_run]  # its own tenant's only
    assert listed(api.admin) == [acme_run, globex_run]
    assert listed(api.admin, tenant="globex") == [globex_run]
    assert listed(api.acme, assignee="ann") == [acme_run]
    assert listed(api.acme, assignee="carol") == []
    assert count_rows(sql, "respond_links") == 0
    assert_error(api.client.get(f"/v1/runs/{acme_run}/waits", headers=api.globex), 404)
    assert_error(api.client.get(f"/v1/runs/{uuid.uuid4()}/waits", headers=api.acme), 404)
    assert_error(api.client.get("/v1/waits", params={"limit": 0}, headers=api.acme), 422)
    assert_error(api.client.get("/v1/waits"), 401)


def test_a_bad_form_is_refused_at_registration(api: Api, sql) -> None:
    bad = {"name": "bad", "nodes": {"ask": {"wait": {
        "signal": "s", "form": {"properties": {"when": {"type": "string",
                                                         "format": "date"}}}}}}}
    error = assert_error(api.client.post("/v1/workflows", headers=api.admin, json=bad), 422)
    assert "nodes.ask.wait.form" in error["message"] and "'format'" in error["message"]
    assert count_rows(sql, "workflows") == 0


@pytest.mark.api_settings(http_allow="127.0.0.1")
def test_the_node_waiting_webhook_carries_a_link(api: Api, sql) -> None:
    with Receiver() as receiver:
        made = api.client.post("/v1/webhooks", headers=api.acme, json={
            "url": receiver.url, "events": ["node_waiting"]})
        assert made.status_code == 201, made.text
        run_id = waiting_run(api)
        # A root wait starts waiting in its submit's statement: its delivery has one too.
        root = api.submit(api.acme, workflow={"name": "root", "nodes": {"ask": {
            "wait": {"signal": "s", "form": FORM, "respond_ttl_s": 60}}}})["run_id"]
        assert Sweeper(api.repo, api.settings).webhooks()["webhooks_delivered"] == 2
        got, at_submit = sorted(receiver.received, key=lambda r: r.event["run_id"] != run_id)
    assert at_submit.event["run_id"] == root and at_submit.event["respond"]["token"]
    link = got.event["respond"]
    assert got.event["node_key"] == "approve" and link["path"] == f"/respond/{link['token']}"
    # Delivered: the outbox keeps no token any more, only its expiry.
    rows = sql.execute("SELECT payload FROM dagq.webhook_deliveries").fetchall()
    assert [set(row["payload"]["respond"]) for row in rows] == [{"expires_at"}] * 2
    assert respond(api, link["token"], {"approved": True}).status_code == 200
    drive(api.repo)
    assert status(api, run_id) == "succeeded"


def test_a_failed_answer_does_not_log_its_token(api: Api, monkeypatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """An answer the API cannot record (503: the database did not answer) leaves its link
    unused, and the API logs the failed request's path: with the token in it, whoever
    reads the logs could answer the wait."""
    from dagq.errors import DatabaseUnavailable
    from dagq.service import waits as waits_service

    run_id = waiting_run(api)
    [wait] = waits(api, run_id)
    token = wait["respond"]["token"]

    def unavailable(*args: Any, **kwargs: Any) -> None:
        raise DatabaseUnavailable("the database did not answer")

    monkeypatch.setattr(waits_service, "respond", unavailable)
    with caplog.at_level(logging.WARNING, logger="dagq.api"):
        assert_error(respond(api, token, {"approved": True}), 503, "database_unavailable")
    assert "POST /v1/respond/<token>: the database did not answer" in caplog.text
    assert token not in caplog.text
    monkeypatch.undo()
    assert respond(api, token, {"approved": True}).status_code == 200  # still unused
