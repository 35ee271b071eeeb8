"""/v1/pauses (issue 32, item 3): an admin pauses any kind, a tenant's key only its own
runs (403 for other kinds, 404 for another tenant's run or pause); pausing again answers
the pause (200); bad input is a 4xx that writes nothing; a pause refusing submits turns
a submit into it into a 409 `paused` (nothing written), others are accepted; resume ends
the pause and keeps it as history; /metrics counts active pauses."""

from __future__ import annotations

import uuid

import pytest

from tests.harness.api import ECHO_FLOW, Api, assert_error, count_rows, samples


def pause(api: Api, headers, status: int = 201, **body) -> dict:
    response = api.client.post("/v1/pauses", json=body, headers=headers)
    assert response.status_code == status, response.text
    return response.json()


def test_an_admin_pauses_lists_and_resumes(api: Api) -> None:
    made = pause(api, api.admin, kind="queue", name="default", reason="incident 42")
    assert made["kind"] == "queue" and made["reason"] == "incident 42"
    assert made["created_by"].startswith("admin key") and made["resumed_at"] is None
    again = pause(api, api.admin, 200, kind="queue", name="default")
    assert again["id"] == made["id"]
    listed = api.client.get("/v1/pauses", headers=api.admin).json()["pauses"]
    assert [p["id"] for p in listed] == [made["id"]]
    ended = api.client.delete(f"/v1/pauses/{made['id']}", headers=api.admin)
    assert ended.status_code == 200 and ended.json()["resumed_at"] is not None
    assert_error(api.client.delete(f"/v1/pauses/{made['id']}", headers=api.admin), 404)
    assert api.client.get("/v1/pauses", headers=api.admin).json() == {"pauses": []}
    history = api.client.get("/v1/pauses?history=true", headers=api.admin).json()["pauses"]
    assert [p["id"] for p in history] == [made["id"]]


def test_a_tenant_key_pauses_only_its_own_runs(api: Api) -> None:
    mine = api.submit(api.acme)["run_id"]
    theirs = api.submit(api.globex)["run_id"]
    for kind, name in (("queue", "default"), ("workflow", "flow"), ("tenant", "acme")):
        assert_error(api.client.post("/v1/pauses", json={"kind": kind, "name": name},
                                     headers=api.acme), 403, "forbidden")
    assert_error(api.client.post("/v1/pauses", json={"kind": "run", "name": theirs},
                                 headers=api.acme), 404)
    made = pause(api, api.acme, kind="run", name=mine)
    assert made["tenant"] == "acme"
    other = pause(api, api.admin, kind="run", name=theirs)
    # each tenant sees its own; the admin every one
    assert [p["id"] for p in api.client.get("/v1/pauses", headers=api.acme).json()[
        "pauses"]] == [made["id"]]
    assert api.client.get("/v1/pauses", headers=api.globex).json()["pauses"][0][
        "id"] == other["id"]
    assert len(api.client.get("/v1/pauses", headers=api.admin).json()["pauses"]) == 2
    assert_error(api.client.delete(f"/v1/pauses/{other['id']}", headers=api.acme), 404)
    assert api.client.delete(f"/v1/pauses/{made['id']}", headers=api.acme).status_code == 200


@pytest.mark.parametrize(("body", "status"), [
    ({}, 422),
    ({"kind": "queue"}, 422),
    ({"kind": "shelf", "name": "x"}, 422),
    ({"kind": "queue", "name": ""}, 422),
    ({"kind": "queue", "name": "bad name!"}, 422),
    ({"kind": "workflow", "name": "x" * 65}, 422),
    ({"kind": "run", "name": "not-a-run-id"}, 422),
    ({"kind": "run", "name": str(uuid.uuid4())}, 404),
    ({"kind": "queue", "name": "q", "reason": "r" * 1001}, 422),
    ({"kind": "queue", "name": "q", "refuse_submits": "yes"}, 422),
    ({"kind": "queue", "name": "q", "extra": 1}, 422),
])
def test_bad_input_is_a_4xx_that_writes_nothing(api: Api, sql, body, status) -> None:
    assert_error(api.client.post("/v1/pauses", json=body, headers=api.admin), status)
    assert count_rows(sql, "pauses") == 0


def test_bad_ids_and_no_key(api: Api) -> None:
    assert_error(api.client.delete("/v1/pauses/nope", headers=api.admin), 404)
    assert_error(api.client.delete(f"/v1/pauses/{uuid.uuid4()}", headers=api.admin), 404)
    assert api.client.post("/v1/pauses", json={"kind": "queue", "name": "q"}).status_code == 401
    assert_error(api.client.get("/v1/pauses?limit=0", headers=api.admin), 422)


def test_a_pause_refusing_submits_answers_409_and_writes_nothing(api: Api, sql) -> None:
    pause(api, api.admin, kind="workflow", name="flow", refuse_submits=True)
    pause(api, api.admin, kind="queue", name="default")  # accepts submits: they wait
    runs = count_rows(sql, "runs")
    refused = api.client.post("/v1/runs", json={"workflow": ECHO_FLOW}, headers=api.acme)
    error = assert_error(refused, 409, "paused")
    assert error["details"] == {"kind": "workflow", "name": "flow"}
    assert count_rows(sql, "runs") == runs
    other = {**ECHO_FLOW, "name": "other"}
    assert api.submit(api.acme, workflow=other)["status"] == "queued"  # into the queue pause
    # a batch: the refused run gets its 409, the other is written
    batch = api.client.post("/v1/runs/batch", json={"runs": [
        {"workflow": ECHO_FLOW}, {"workflow": other, "event_key": "k2"}]}, headers=api.acme)
    results = batch.json()["results"]
    assert results[0]["error"]["code"] == "paused" and "run_id" in results[1]


def test_metrics_count_active_pauses(api: Api) -> None:
    pause(api, api.admin, kind="queue", name="a")
    pause(api, api.admin, kind="tenant", name="acme")
    found = samples(api.client.get("/metrics").text)
    assert found[("dagq_pauses_active", (("kind", "queue"),))] == 1
    assert found[("dagq_pauses_active", (("kind", "tenant"),))] == 1
    assert found[("dagq_pauses_active", (("kind", "run"),))] == 0


def test_a_run_shows_why_its_nodes_wait(api: Api) -> None:
    run_id = api.submit(api.acme)["run_id"]
    made = pause(api, api.acme, kind="run", name=run_id, reason="looking into it")
    body = api.client.get(f"/v1/runs/{run_id}", headers=api.acme).json()
    nodes = {n["key"]: n["blocked"] for n in body["nodes"]}
    assert nodes["a"]["reason"] == "paused" and "looking into it" in nodes["a"]["detail"]
    assert nodes["a"]["since"] == made["created_at"] and nodes["a"]["until"] is None
    assert nodes["b"] == {"reason": "dependencies", "detail": "waits for a",
                          "since": body["created_at"], "until": None}
    assert body["blocked"]["reason"] == "paused"
