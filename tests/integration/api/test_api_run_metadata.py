"""Run metadata over the API (issue 34, item 2): stored on submit (one, a batch), shown by
GET /v1/runs and /v1/runs/{id}, kept by an idempotent resubmit, found by meta.K=V with the
other filters and the cursor; every bad value a 422 naming the key that writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema_rs
import pytest

from dagq.api.openapi import openapi_document
from tests.harness.api import ECHO_FLOW, Api, assert_error, count_rows


def listed(api: Api, headers: dict[str, str], **params: Any) -> list[str]:
    response = api.client.get("/v1/runs", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return [run["run_id"] for run in response.json()["runs"]]


def test_metadata_is_stored_and_shown(api: Api) -> None:
    meta = {"conversation_id": "c-42", "user": 7, "score": 0.25, "beta": True}
    run_id = api.submit(api.acme, metadata=meta)["run_id"]
    assert api.client.get(f"/v1/runs/{run_id}", headers=api.acme).json()["metadata"] == meta
    [summary] = api.client.get("/v1/runs", headers=api.acme).json()["runs"]
    assert summary["metadata"] == meta
    plain = api.submit(api.acme)["run_id"]
    assert api.client.get(f"/v1/runs/{plain}", headers=api.acme).json()["metadata"] is None
    empty = api.submit(api.acme, metadata={})["run_id"]  # stored as none
    assert api.client.get(f"/v1/runs/{empty}", headers=api.acme).json()["metadata"] is None


def test_a_resubmit_under_its_event_key_keeps_the_first_metadata(api: Api) -> None:
    first = api.submit(api.acme, event_key="k1", metadata={"v": "1"})
    again = api.client.post("/v1/runs", headers=api.acme, json={
        "workflow": ECHO_FLOW, "event_key": "k1", "metadata": {"v": "2"}})
    assert again.status_code == 200 and again.json()["run_id"] == first["run_id"]
    assert again.json()["created"] is False
    run = api.client.get(f"/v1/runs/{first['run_id']}", headers=api.acme).json()
    assert run["metadata"] == {"v": "1"}


@pytest.mark.parametrize(("metadata", "key"), [
    ({"bad key": "x"}, "bad key"),
    ({"ok": None}, "ok"),
    ({"ok": [1]}, "ok"),
    ({"ok": "x" * 257}, "ok"),
    ({"ok": True, "k": {}}, "k"),
])
def test_bad_metadata_is_a_422_naming_the_key(api: Api, sql, metadata: dict[str, Any],
                                              key: str) -> None:
    body = assert_error(api.client.post("/v1/runs", headers=api.acme, json={
        "workflow": {"name": "x", "nodes": {"a": {"executor": "builtin.noop"}}},
        "metadata": metadata}), 422)
    assert repr(key) in body["message"] and body["details"] == {"key": key}, body
    assert count_rows(sql, "runs") == 0
    assert not submit_schema().is_valid({"workflow": "w", "metadata": metadata})


def submit_schema() -> jsonschema_rs.Draft202012Validator:
    document = openapi_document()
    return jsonschema_rs.Draft202012Validator({
        "$ref": "#/components/schemas/SubmitRunBody", "components": document["components"]})


def test_the_schema_states_the_bounds_but_the_size() -> None:
    schema = submit_schema()
    assert schema.is_valid({"workflow": "w", "metadata": {"a.b:c-d": "x", "n": -1.5,
                                                           "ok": False}})
    assert schema.is_valid({"workflow": "w", "metadata": None})
    assert not schema.is_valid({"workflow": "w", "metadata": {f"k{i}": 1 for i in range(17)}})
    # over 2 KiB as JSON: schema-valid, refused with a 422 (schemathesis.toml says so)
    assert schema.is_valid({"workflow": "w", "metadata": {f"k{i}": "y" * 200
                                                          for i in range(12)}})


def test_too_much_metadata_or_not_an_object_is_a_422(api: Api, sql) -> None:
    flow = {"name": "x", "nodes": {"a": {"executor": "builtin.noop"}}}
    for metadata in ({f"k{i}": i for i in range(17)}, {f"k{i}": "y" * 200 for i in range(12)},
                     ["a"], "a"):
        assert_error(api.client.post("/v1/runs", headers=api.acme, json={
            "workflow": flow, "metadata": metadata}), 422)
    assert count_rows(sql, "runs") == 0


def test_a_batch_item_with_bad_metadata_fails_alone(api: Api) -> None:
    flow = {"name": "x", "nodes": {"a": {"executor": "builtin.noop"}}}
    results = api.client.post("/v1/runs/batch", headers=api.acme, json={"runs": [
        {"workflow": flow, "metadata": {"n": 1}},
        {"workflow": flow, "metadata": {"bad key": 1}}]}).json()["results"]
    assert results[0]["created"] is True
    assert results[1]["error"]["code"] == "invalid_request"
    assert "'bad key'" in results[1]["error"]["message"]
    run = api.client.get(f"/v1/runs/{results[0]['run_id']}", headers=api.acme).json()
    assert run["metadata"] == {"n": 1}


def test_meta_filters_compare_as_json_scalars(api: Api) -> None:
    number = api.submit(api.acme, metadata={"n": 5, "c": "c-1"})["run_id"]
    text = api.submit(api.acme, metadata={"n": "5", "c": "c-2"})["run_id"]
    other = api.submit(api.acme, metadata={"n": 6, "flag": True})["run_id"]
    decimal = api.submit(api.acme, metadata={"n": 5.0})["run_id"]
    big = api.submit(api.acme, metadata={"e": 1e20, "i": 2**70})["run_id"]
    api.submit(api.acme)  # none
    assert listed(api, api.acme, **{"meta.e": "1e20"}) == [big]
    assert listed(api, api.acme, **{"meta.e": "100000000000000000000"}) == [big]
    assert listed(api, api.acme, **{"meta.i": str(2**70)}) == [big]
    assert set(listed(api, api.acme, **{"meta.n": "5"})) == {number, text, decimal}
    assert listed(api, api.acme, **{"meta.n": "5", "meta.c": "c-2"}) == [text]
    assert listed(api, api.acme, **{"meta.flag": "true"}) == [other]
    assert listed(api, api.acme, **{"meta.flag": "True"}) == []
    assert listed(api, api.acme, **{"meta.c": "c-3"}) == []
    # another tenant sees none of them, even by their own values
    assert listed(api, api.globex, **{"meta.n": "5"}) == []
    # with the other filters
    assert listed(api, api.acme, **{"meta.n": "5", "status": "running"}) == []
    assert len(listed(api, api.acme, **{"meta.n": "5", "status": "queued"})) == 3


def test_text_that_looks_like_a_path_is_only_text(api: Api) -> None:
    tricky = {"q": '" || $.x == "y\\', "u": "é ✓ \n"}
    run_id = api.submit(api.acme, metadata=tricky)["run_id"]
    api.submit(api.acme, metadata={"x": "y", "q": "other"})
    assert listed(api, api.acme, **{"meta.q": tricky["q"]}) == [run_id]
    assert listed(api, api.acme, **{"meta.u": tricky["u"], "meta.q": tricky["q"]}) == [run_id]
    assert listed(api, api.acme, **{"meta.q": '"'}) == []


def test_meta_filters_page_with_the_cursor(api: Api) -> None:
    ids = [api.submit(api.acme, metadata={"c": "same"})["run_id"] for _ in range(5)]
    api.submit(api.acme, metadata={"c": "other"})
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"meta.c": "same", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.client.get("/v1/runs", headers=api.acme, params=params).json()
        seen += [run["run_id"] for run in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]


def test_created_after_and_before(api: Api, sql) -> None:
    old = api.submit(api.acme, metadata={"c": "x"})["run_id"]
    new = api.submit(api.acme, metadata={"c": "x"})["run_id"]
    sql.execute("UPDATE dagq.runs SET created_at = '2026-01-01T10:00:00Z' WHERE id = %s",
                (old,))
    sql.execute("UPDATE dagq.runs SET created_at = '2026-01-02T10:00:00Z' WHERE id = %s",
                (new,))
    for meta in ({}, {"meta.c": "x"}):  # both statements
        assert listed(api, api.acme, created_after="2026-01-02", **meta) == [new]
        assert listed(api, api.acme, created_before="2026-01-02", **meta) == [old]
        # inclusive after, exclusive before; an offset; no offset is UTC
        assert listed(api, api.acme, created_after="2026-01-01T10:00:00Z",
                      created_before="2026-01-02T10:00", **meta) == [old]
        assert listed(api, api.acme, created_after="2026-01-02T11:00:00+02:00", **meta) == [new]
    later = (datetime(2026, 1, 2, 10, tzinfo=UTC) + timedelta(microseconds=1)).isoformat()
    assert listed(api, api.acme, created_after=later) == []


@pytest.mark.parametrize("params", [
    {"created_after": "yesterday"}, {"created_after": "1700000000"},
    {"created_before": "2026-13-01"}, {"created_before": "2026-02-30T10:00"},
    {"meta.bad key": "1"}, {"meta.": "1"}, {"meta.k": "x" * 257},
    {**{f"meta.k{i}": "v" for i in range(9)}},
    {"id_prefix": "abcd", "meta.k": "v"}, {"id_prefix": "abcd", "created_after": "2026-01-01"},
])
def test_bad_filters_are_422(api: Api, params: dict[str, str]) -> None:
    assert_error(api.client.get("/v1/runs", headers=api.acme, params=params), 422)


def test_a_meta_key_given_twice_is_a_422(api: Api) -> None:
    body = assert_error(api.client.get("/v1/runs?meta.k=1&meta.k=2", headers=api.acme), 422)
    assert "twice" in body["message"]
