"""POST /v1/runs/bulk/{cancel|retry|rerun} (issue 34, item 2): a filter or ids, the
caller's tenant only (an admin key may name one), counts and a cursor, idempotent, and
every bad body a 4xx that acts on nothing."""

from __future__ import annotations

import uuid
from typing import Any

import jsonschema_rs
import pytest

from dagq.api.openapi import openapi_document
from tests.harness.api import Api, assert_error
from tests.harness.drive import drive

FLOW = {"name": "f", "nodes": {"a": {"executor": "builtin.noop"},
                               "b": {"executor": "builtin.noop", "depends_on": ["a"]}}}


def submit(api: Api, headers: dict[str, str], n: int, **metadata: Any) -> list[str]:
    results = api.client.post("/v1/runs/batch", headers=headers, json={"runs": [
        {"workflow": FLOW, "metadata": metadata} for _ in range(n)]}).json()["results"]
    return [r["run_id"] for r in results]


def bulk(api: Api, headers: dict[str, str], action: str, **body: Any) -> dict[str, Any]:
    response = api.client.post(f"/v1/runs/bulk/{action}", headers=headers, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def statuses(sql) -> dict[tuple[str, str], int]:
    rows = sql.execute("SELECT tenant, status, count(*) AS n FROM dagq.runs "
                       "GROUP BY tenant, status").fetchall()
    return {(row["tenant"], row["status"]): row["n"] for row in rows}


def test_bulk_cancel_by_filter_pages_and_is_idempotent(api: Api, sql) -> None:
    submit(api, api.acme, 25, batch="b1")
    submit(api, api.acme, 2, batch="b2")
    submit(api, api.globex, 5, batch="b1")
    by_batch = {"filter": {"meta": {"batch": "b1"}}, "limit": 10}
    first = bulk(api, api.acme, "cancel", **by_batch)
    assert first["acted"] == 10 and first["skipped"] == 0 and first["next_cursor"]
    second = bulk(api, api.acme, "cancel", **by_batch, cursor=first["next_cursor"])
    third = bulk(api, api.acme, "cancel", **by_batch, cursor=second["next_cursor"])
    assert (second["acted"], third["acted"], third["next_cursor"]) == (10, 5, None)
    assert statuses(sql) == {("acme", "cancelled"): 25, ("acme", "queued"): 2,
                             ("globex", "queued"): 5}
    again = bulk(api, api.acme, "cancel", filter={"meta": {"batch": "b1"}}, limit=100)
    assert again == {"acted": 0, "skipped": 25, "skipped_by": {"already_cancelled": 25},
                     "next_cursor": None}


def test_bulk_by_ids_skips_other_tenants_and_unknown_runs(api: Api, sql) -> None:
    mine = submit(api, api.acme, 3)
    theirs = submit(api, api.globex, 1)
    result = bulk(api, api.acme, "cancel", ids=[*mine, *theirs, str(uuid.uuid4())])
    assert result == {"acted": 3, "skipped": 2, "skipped_by": {"not_found": 2},
                      "next_cursor": None}
    assert statuses(sql) == {("acme", "cancelled"): 3, ("globex", "queued"): 1}
    # an admin key may act on another tenant's runs, by ids or naming the tenant
    assert bulk(api, api.admin, "cancel", filter={"tenant": "globex"})["acted"] == 1
    forbidden = api.client.post("/v1/runs/bulk/cancel", headers=api.acme,
                                json={"filter": {"tenant": "globex"}})
    assert "admin key" in assert_error(forbidden, 422)["message"]


def test_bulk_retry_and_rerun(api: Api, sql) -> None:
    ids = submit(api, api.acme, 4, batch="r")
    bulk(api, api.acme, "cancel", ids=ids)
    assert bulk(api, api.acme, "retry", filter={"status": "cancelled"})["acted"] == 4
    assert bulk(api, api.acme, "retry", ids=ids)["skipped_by"] == {"not_retryable": 4}
    drive(api.repo)
    done = bulk(api, api.acme, "rerun", filter={"meta": {"batch": "r"}}, **{"from": ["b"]})
    assert done["acted"] == 4
    assert bulk(api, api.acme, "rerun", ids=ids, **{"from": ["b"]})["skipped_by"] == {
        "already_rerun": 4}
    reruns = api.client.get("/v1/runs", headers=api.acme,
                            params={"meta.batch": "r", "status": "running"}).json()["runs"]
    assert len(reruns) == 4  # they keep the metadata
    # without `from`: each run's failed and cancelled nodes; a run with none is skipped
    [cancelled] = submit(api, api.acme, 1)
    bulk(api, api.acme, "cancel", ids=[cancelled])
    assert bulk(api, api.acme, "rerun", ids=[cancelled, ids[0]])["skipped_by"] == {
        "already_rerun": 1}
    drive(api.repo)
    [fine] = submit(api, api.acme, 1)
    drive(api.repo)
    assert bulk(api, api.acme, "rerun", ids=[fine])["skipped_by"] == {"nothing_failed": 1}


@pytest.mark.parametrize(("action", "body"), [
    ("cancel", {}),
    ("cancel", {"filter": {}, "ids": [str(uuid.uuid4())]}),
    ("cancel", {"filter": None}),
    ("cancel", {"ids": []}),
    ("cancel", {"ids": ["nope"]}),
    ("cancel", {"ids": [str(uuid.uuid4())] * 1001}),
    ("cancel", {"filter": {}, "limit": 0}),
    ("cancel", {"filter": {}, "limit": 1001}),
    ("cancel", {"filter": {"status": "bogus"}}),
    ("cancel", {"filter": {"meta": {"bad key": "1"}}}),
    ("cancel", {"filter": {"meta": {"k": None}}}),
    ("cancel", {"filter": {"meta": {"k": "x" * 257}}}),
    ("cancel", {"filter": {"created_after": "yesterday"}}),
    ("cancel", {"filter": {"created_after": "2026-02-30"}}),
    ("cancel", {"filter": {"other": 1}}),
    ("cancel", {"ids": [str(uuid.uuid4())], "cursor": "1_" + "0" * 32}),
    ("cancel", {"filter": {}, "cursor": "nope"}),
    ("cancel", {"filter": {}, "from": ["a"]}),
    ("rerun", {"filter": {}, "from": []}),
    ("rerun", {"filter": {}, "from": ["bad key!"]}),
])
def test_bad_bodies_are_422_and_act_on_nothing(api: Api, sql, action: str,
                                               body: dict[str, Any]) -> None:
    submit(api, api.acme, 2)
    assert_error(api.client.post(f"/v1/runs/bulk/{action}", headers=api.acme, json=body), 422)
    assert statuses(sql) == {("acme", "queued"): 2}
    # the OpenAPI document refuses them too, but a date that does not exist (its shape
    # is right) and a cursor for ids (an if/then the schema states, checked below)
    if body.get("filter", {}) != {"created_after": "2026-02-30"}:
        assert not body_schema(action).is_valid(body), body


def body_schema(action: str) -> jsonschema_rs.Draft202012Validator:
    document = openapi_document()
    schema = document["paths"][f"/v1/runs/bulk/{action}"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    return jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]})


def test_the_schema_accepts_what_the_api_accepts() -> None:
    good = [{"filter": {}}, {"ids": [str(uuid.uuid4())], "limit": 5},
            {"filter": {"status": "failed", "workflow": "w", "meta": {"k": "v", "n": 5,
                                                                       "ok": True},
                        "created_after": "2026-01-01", "created_before": "2026-01-02T10:00Z",
                        "tenant": "acme"}, "limit": 1000, "cursor": "1_" + "0" * 32}]
    for body in good:
        assert body_schema("cancel").is_valid(body), body
        assert body_schema("rerun").is_valid({**body, "from": ["a"]}), body
    assert not body_schema("retry").is_valid({"filter": {}, "from": ["a"]})


def test_the_routes_answer_like_the_others(api: Api) -> None:
    assert_error(api.client.post("/v1/runs/bulk/cancel", json={"filter": {}}), 401)
    assert_error(api.client.post("/v1/runs/bulk/cancel", headers=api.acme, content=b"{x"), 400)
    assert api.client.get("/v1/runs/bulk/cancel", headers=api.acme).status_code == 405
    assert_error(api.client.post("/v1/runs/bulk/delete", headers=api.acme, json={}), 404)
