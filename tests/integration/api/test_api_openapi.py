"""/openapi.json says what the API does (issue 12; schemathesis checks the same at
random in tests/e2e/test_api_server.py): bodies the schema refuses are refused by the
API, a cursor or a Last-Event-ID the schema allows is accepted and one it forbids is
refused, and each SSE event matches the documented event schema."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import jsonschema_rs
import pytest

from dagq.api.openapi import openapi_document
from tests.harness.api import ECHO_FLOW, Api, assert_error, count_rows
from tests.harness.drive import drive


def validator(schema: dict[str, Any]) -> jsonschema_rs.Draft202012Validator:
    """A validator for `schema`, resolving refs into the document's components."""
    return jsonschema_rs.Draft202012Validator(
        {**schema, "components": openapi_document()["components"]})


def component(name: str) -> jsonschema_rs.Draft202012Validator:
    return validator({"$ref": f"#/components/schemas/{name}"})


def parameter(path: str, name: str) -> jsonschema_rs.Draft202012Validator:
    [found] = [p for p in openapi_document()["paths"][path]["get"]["parameters"]
               if p["name"] == name]
    return validator(found["schema"])


ONE_NODE = {"a": {"executor": "builtin.noop"}}
REFUSED_SPECS = [
    {},  # (`workflow: {}` was schema-valid)
    {"name": "x"},
    {"name": "x", "nodes": {}},
    {"name": "x", "nodes": {"a b": {"executor": "builtin.noop"}}},
    {"name": "x", "nodes": {"a": {"executor": "builtin.noop", "depends_on": ["b", "b"]}}},
    {"name": "x", "nodes": {"a": {"executor": "builtin.noop", "depends_on": ["b c"]}}},
    {"name": "x", "nodes": {f"n{i}": {"executor": "builtin.noop"} for i in range(1001)}},
]


@pytest.mark.parametrize("spec", REFUSED_SPECS, ids=range(len(REFUSED_SPECS)))
def test_specs_the_schema_forbids_are_refused(api: Api, sql, spec: dict[str, Any]) -> None:
    assert not component("WorkflowSpec").is_valid(spec)
    assert not component("SubmitRunBody").is_valid({"workflow": spec})
    assert_error(api.client.post("/v1/runs", headers=api.acme, json={"workflow": spec}), 422)
    assert_error(api.client.post("/v1/workflows", headers=api.admin, json=spec), 422)
    assert_error(api.client.post("/v1/schedules", headers=api.acme, json={
        "workflow": spec, "cron": "0 * * * *"}), 422)
    assert count_rows(sql, "runs") == count_rows(sql, "workflows") == 0


def test_version_goes_with_a_registered_name_only(api: Api) -> None:
    inline = {"workflow": {"name": "x", "nodes": ONE_NODE}, "version": 1}
    assert not component("SubmitRunBody").is_valid(inline)
    assert_error(api.client.post("/v1/runs", headers=api.acme, json=inline), 422)
    schedule = {**inline, "cron": "0 * * * *"}
    assert not component("CreateScheduleBody").is_valid(schedule)
    assert_error(api.client.post("/v1/schedules", headers=api.acme, json=schedule), 422)
    assert component("SubmitRunBody").is_valid({**inline, "version": None})
    assert api.client.post("/v1/runs", headers=api.acme,
                           json={**inline, "version": None}).status_code == 201


def test_a_cron_needs_five_fields_in_the_schema_too(api: Api) -> None:
    body = {"workflow": ECHO_FLOW, "cron": "0 0 * * *"}
    assert component("CreateScheduleBody").is_valid(body)
    for cron in ("0 0 * *", "0 0 * * * *", "0\t0 * * *"):
        assert not component("CreateScheduleBody").is_valid({**body, "cron": cron})
        assert_error(api.client.post("/v1/schedules", headers=api.acme,
                                     json={**body, "cron": cron}), 422)


def test_every_cursor_the_schema_allows_is_accepted(api: Api) -> None:
    for i in range(3):
        api.submit(api.acme, inputs={"i": i})
    first = api.client.get("/v1/runs?limit=2", headers=api.acme).json()
    cursor = first["next_cursor"]
    allowed = parameter("/v1/runs", "cursor")
    assert allowed.is_valid(cursor)
    rest = api.client.get(f"/v1/runs?limit=2&cursor={cursor}", headers=api.acme).json()
    assert len(rest["runs"]) == 1 and rest["next_cursor"] is None
    for made_up in ("0_" + "0" * 32, "-9999999999999999_" + "f" * 32,
                    "9999999999999999_" + uuid.uuid4().hex):
        assert allowed.is_valid(made_up)
        assert api.client.get(f"/v1/runs?cursor={made_up}", headers=api.acme).status_code \
            == 200
    for bad in ("", "0_" + "0" * 31, "99999999999999999_" + "0" * 32, "1_" + "A" * 32,
                "bm90LWEtY3Vyc29y"):
        assert not allowed.is_valid(bad)
        assert_error(api.client.get("/v1/runs", params={"cursor": bad}, headers=api.acme),
                     422)


def test_last_event_id_is_what_the_schema_says(api: Api) -> None:
    run_id = api.submit(api.acme)["run_id"]
    drive(api.repo)
    url = f"/v1/runs/{run_id}/events"
    allowed = parameter("/v1/runs/{run_id}/events", "Last-Event-ID")
    everything = api.client.get(url, headers=api.acme).text
    assert allowed.is_valid("")  # an empty Last-Event-ID counts as absent
    assert api.client.get(url, headers={**api.acme, "Last-Event-ID": ""}).text == everything
    assert allowed.is_valid("0") and allowed.is_valid("9" * 18)
    assert api.client.get(url, headers={**api.acme, "Last-Event-ID": "9" * 18}).text == ""
    # 0.2: an SSE id may be the cursor `E.C` (event id, streamed chunk id).
    assert allowed.is_valid("5.0") and allowed.is_valid(f"{'9' * 18}.{'9' * 18}")
    assert api.client.get(url, headers={**api.acme, "Last-Event-ID": "9" * 18 + ".1"}).text == ""
    for bad in ("9" * 19, "+5", "5.", ".5", "5.0.1", "5." + "9" * 19, "x", "0x10"):
        assert not allowed.is_valid(bad)
        assert_error(api.client.get(url, headers={**api.acme, "Last-Event-ID": bad}), 422)


def test_each_sse_event_matches_the_documented_event(api: Api) -> None:
    run_id = api.submit(api.acme)["run_id"]
    drive(api.repo)
    content = openapi_document()["paths"]["/v1/runs/{run_id}/events"]["get"]["responses"][
        "200"]["content"]["text/event-stream"]
    event_schema = validator(content["itemSchema"])
    data_schema = validator(content["itemSchema"]["properties"]["data"]["contentSchema"])
    text = api.client.get(f"/v1/runs/{run_id}/events", headers=api.acme).text
    frames = [dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
              for block in re.split(r"(?:\r?\n){2}", text.strip())]
    frames = [f for f in frames if "data" in f]  # (pings are comments)
    assert len(frames) >= 5 and frames[-1]["event"] == "run_succeeded"
    for frame in frames:
        assert event_schema.is_valid(frame), frame
        assert data_schema.is_valid(json.loads(frame["data"])), frame
