"""/v1/schedules in process: create, read, list, delete, tenant isolation, bad input, and
the sweeper firing a schedule created over HTTP."""

from __future__ import annotations

import pytest

from dagq.config import Settings
from dagq.sweeper.passes import Sweeper
from tests.harness.api import ECHO_FLOW, Api, assert_error, count_rows


def test_create_read_list_delete(api: Api, sql) -> None:
    created = api.client.post("/v1/schedules", headers=api.acme, json={
        "workflow": ECHO_FLOW, "cron": "*/10 * * * *", "inputs": {"n": 1},
        "timezone": "Europe/Paris"})
    assert created.status_code == 201, created.text
    schedule_id = created.json()["schedule_id"]
    one = api.client.get(f"/v1/schedules/{schedule_id}", headers=api.acme).json()
    assert one["cron"] == "*/10 * * * *" and one["tenant"] == "acme"
    assert one["timezone"] == "Europe/Paris" and one["last_fire_at"] is None
    listed = api.client.get("/v1/schedules", headers=api.acme).json()["schedules"]
    assert [s["schedule_id"] for s in listed] == [schedule_id]
    assert api.client.delete(f"/v1/schedules/{schedule_id}", headers=api.acme).status_code \
        == 204
    assert_error(api.client.get(f"/v1/schedules/{schedule_id}", headers=api.acme), 404)
    assert count_rows(sql, "schedules") == 0


def test_tenants_see_only_their_schedules(api: Api) -> None:
    schedule_id = api.client.post("/v1/schedules", headers=api.acme, json={
        "workflow": ECHO_FLOW, "cron": "0 * * * *"}).json()["schedule_id"]
    assert_error(api.client.get(f"/v1/schedules/{schedule_id}", headers=api.globex), 404)
    assert_error(api.client.delete(f"/v1/schedules/{schedule_id}", headers=api.globex), 404)
    assert api.client.get("/v1/schedules", headers=api.globex).json() == {"schedules": []}
    assert len(api.client.get("/v1/schedules", headers=api.admin).json()["schedules"]) == 1


@pytest.mark.parametrize("body", [
    {"workflow": ECHO_FLOW, "cron": "not a cron"},
    {"workflow": ECHO_FLOW, "cron": "99 * * * *"},
    {"workflow": ECHO_FLOW, "cron": "* * * * *", "timezone": "Nowhere/Land"},
    {"workflow": ECHO_FLOW, "cron": "* * * * *", "extra": 1},
    {"workflow": {"name": "x", "nodes": {}}, "cron": "* * * * *"},
    {"cron": "* * * * *"},
])
def test_bad_schedules_are_422_and_write_nothing(api: Api, sql, body) -> None:
    response = api.client.post("/v1/schedules", headers=api.acme, json=body)
    assert_error(response, 422)
    assert count_rows(sql, "schedules") == 0


def test_unknown_workflow_and_bad_ids(api: Api) -> None:
    assert_error(api.client.post("/v1/schedules", headers=api.acme, json={
        "workflow": "missing", "cron": "* * * * *"}), 404)
    assert_error(api.client.get("/v1/schedules/not-a-uuid", headers=api.acme), 404)
    assert_error(api.client.get("/v1/schedules", headers={}), 401)


def test_the_sweeper_fires_a_schedule_made_over_http(api: Api, sql) -> None:
    schedule_id = api.client.post("/v1/schedules", headers=api.acme, json={
        "workflow": ECHO_FLOW, "cron": "* * * * *"}).json()["schedule_id"]
    sql.execute("UPDATE dagq.schedules SET created_at = now() - interval '2 minutes'")
    assert Sweeper(api.repo, Settings()).schedules()["fired"] == 1
    fired = api.client.get(f"/v1/schedules/{schedule_id}", headers=api.acme).json()
    run = api.client.get(f"/v1/runs/{fired['last_run_id']}", headers=api.acme).json()
    assert run["event_key"].startswith(f"schedule:{schedule_id}:")
