"""/v1/webhooks (issue 33): subscribe (the secret shown once, never listed), list and
delete per tenant, an unsafe URL refused by builtin.http's guard (422, nothing written),
deliveries listed, shown with their attempts and redelivered, another tenant's a 404; a
submit's `callback` hears its own run only, and only if that submit created it."""

from __future__ import annotations

import uuid

import pytest

from dagq.sweeper.passes import Sweeper
from examples.webhook_receiver import verify
from tests.harness.api import ECHO_FLOW, Api, assert_error, count_rows
from tests.harness.drive import drive
from tests.harness.receiver import Receiver

pytestmark = pytest.mark.api_settings(http_allow="127.0.0.1")
SECRET = "a-secret-the-receiver-knows"


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def subscribe(api: Api, headers, url: str, **body) -> dict:
    body.setdefault("events", ["run_succeeded"])
    response = api.client.post("/v1/webhooks", json={"url": url, **body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def deliver(api: Api) -> dict:
    return Sweeper(api.repo, api.settings).webhooks()


def test_subscribe_list_and_delete_per_tenant(api: Api, receiver) -> None:
    made = subscribe(api, api.acme, receiver.url, events=["run_failed", "run_succeeded"])
    assert made["secret"].startswith("whsec_") and made["tenant"] == "acme"
    assert made["events"] == ["run_succeeded", "run_failed"]  # the documented order
    listed = api.client.get("/v1/webhooks", headers=api.acme).json()["webhooks"]
    assert [w["id"] for w in listed] == [made["id"]]
    assert all("secret" not in w for w in listed)  # never again
    assert api.client.get("/v1/webhooks", headers=api.globex).json() == {"webhooks": []}
    assert [w["id"] for w in api.client.get("/v1/webhooks", headers=api.admin).json()[
        "webhooks"]] == [made["id"]]
    assert_error(api.client.delete(f"/v1/webhooks/{made['id']}", headers=api.globex), 404)
    assert_error(api.client.delete("/v1/webhooks/nope", headers=api.acme), 404)
    assert api.client.delete(f"/v1/webhooks/{made['id']}",
                             headers=api.acme).status_code == 204
    assert_error(api.client.delete(f"/v1/webhooks/{made['id']}", headers=api.acme), 404)
    assert api.client.post("/v1/webhooks", json={}).status_code == 401
    wrong = api.client.delete("/v1/webhooks/deliveries", headers=api.acme)
    assert wrong.status_code == 405 and "GET" in wrong.headers["allow"]


@pytest.mark.api_settings()  # DAGQ_HTTP_ALLOW empty: loopback is refused
@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/x", "http://localhost/x", "http://169.254.169.254/latest",
    "http://10.0.0.1/x", "http://[::1]/x", "http://metadata.google.internal/x",
])
def test_an_unsafe_url_is_a_422_that_writes_nothing(api: Api, sql, url: str) -> None:
    error = assert_error(api.client.post("/v1/webhooks", json={
        "url": url, "events": ["run_failed"]}, headers=api.acme), 422, "invalid_request")
    assert "refuses" in error["message"] and "DAGQ_HTTP_ALLOW" in error["message"]
    assert count_rows(sql, "webhooks") == 0


@pytest.mark.parametrize("body", [
    {"url": "ftp://example.com/x", "events": ["run_failed"]},
    {"url": "https://example.com/x", "events": []},
    {"url": "https://example.com/x", "events": ["run_started"]},
    {"url": "https://example.com/x", "events": ["run_failed"], "secret": "short"},
    {"url": "https://example.com/x", "events": ["run_failed"], "extra": 1},
    {"url": "https://example.com/x", "events": ["run_failed"], "workflow": "a b"},
])
def test_bad_bodies_are_422s(api: Api, sql, body: dict) -> None:
    assert_error(api.client.post("/v1/webhooks", json=body, headers=api.acme), 422)
    assert count_rows(sql, "webhooks") == 0


def test_deliveries_are_listed_shown_and_redelivered_per_tenant(api: Api, receiver) -> None:
    subscribe(api, api.acme, receiver.url, secret=SECRET)
    run = api.submit(api.acme, workflow=ECHO_FLOW)
    drive(api.repo)
    receiver.answer(500)
    assert deliver(api)["webhooks_retried"] == 1
    [listed] = api.client.get("/v1/webhooks/deliveries", params={"status": "pending"},
                              headers=api.acme).json()["deliveries"]
    assert listed["run_id"] == run["run_id"] and listed["event"] == "run_succeeded"
    assert api.client.get("/v1/webhooks/deliveries",
                          headers=api.globex).json() == {"deliveries": []}
    path = f"/v1/webhooks/deliveries/{listed['id']}"
    shown = api.client.get(path, headers=api.acme).json()
    assert [(a["attempt"], a["status_code"]) for a in shown["history"]] == [(1, 500)]
    assert_error(api.client.get(path, headers=api.globex), 404)
    assert_error(api.client.post(f"{path}/redeliver", headers=api.globex), 404)
    assert_error(api.client.post(f"/v1/webhooks/deliveries/{uuid.uuid4()}/redeliver",
                                 headers=api.acme), 404)
    assert_error(api.client.get("/v1/webhooks/deliveries", params={"status": "lost"},
                                headers=api.acme), 422)
    again = api.client.post(f"{path}/redeliver", headers=api.acme)
    assert again.status_code == 200 and again.json()["status"] == "pending"
    assert deliver(api)["webhooks_delivered"] == 1
    assert [r.headers["dagq-delivery"] for r in receiver.received] == [listed["id"]] * 2
    assert all(verify(SECRET, r.headers["dagq-signature"], r.body) for r in receiver.received)
    shown = api.client.get(path, headers=api.acme).json()
    assert shown["status"] == "succeeded" and len(shown["history"]) == 2


def test_a_submit_callback_hears_its_own_run(api: Api, receiver, sql) -> None:
    callback = {"url": receiver.url, "secret": SECRET}
    mine = api.submit(api.acme, workflow=ECHO_FLOW, callback=callback, event_key="k1")
    api.submit(api.acme, workflow=ECHO_FLOW)  # no callback
    # The same event key again returns the existing run: no second callback.
    again = api.submit(api.acme, workflow=ECHO_FLOW, callback=callback, event_key="k1")
    assert again["run_id"] == mine["run_id"] and count_rows(sql, "webhooks") == 1
    drive(api.repo)
    assert deliver(api)["webhooks_delivered"] == 1
    [got] = receiver.received
    assert got.event["run_id"] == mine["run_id"] and got.event["event"] == "run_succeeded"
    assert verify(SECRET, got.headers["dagq-signature"], got.body)
    assert api.client.get("/v1/webhooks", headers=api.acme).json() == {"webhooks": []}


@pytest.mark.api_settings()  # loopback refused
def test_an_unsafe_callback_refuses_the_submit(api: Api, sql) -> None:
    assert_error(api.client.post("/v1/runs", json={
        "workflow": ECHO_FLOW, "callback": {"url": "http://127.0.0.1:9/x"}},
        headers=api.acme), 422)
    assert count_rows(sql, "runs") == count_rows(sql, "webhooks") == 0
    results = api.client.post("/v1/runs/batch", json={"runs": [
        {"workflow": ECHO_FLOW, "callback": {"url": "http://127.0.0.1:9/x"}},
        {"workflow": ECHO_FLOW}]}, headers=api.acme).json()["results"]
    assert results[0]["error"]["code"] == "invalid_request" and "run_id" in results[1]
    assert count_rows(sql, "runs") == 1 and count_rows(sql, "webhooks") == 0
