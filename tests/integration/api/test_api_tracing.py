"""The traceparent a submit stores (issue 31, item 1), with tracing off in the API: the
caller's `traceparent` header as it is (one submit, each run of a batch), nothing for an
invalid one (W3C: a new trace), the parent run's for a child run; an explicit bad one
from Python is a 422 that writes nothing."""

from __future__ import annotations

import pytest

from dagq import service
from dagq.errors import InvalidRequest
from tests.harness.api import count_rows

CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ECHO = {"name": "traced-echo", "nodes": {"a": {"executor": "builtin.echo"}}}


def traceparent(sql, run_id: str) -> str | None:
    return sql.execute("SELECT traceparent FROM dagq.runs WHERE id = %s",
                       (run_id,)).fetchone()["traceparent"]


def test_a_submit_stores_the_callers_traceparent(api, sql) -> None:
    created = api.client.post("/v1/runs", json={"workflow": ECHO},
                              headers={**api.acme, "traceparent": CALLER})
    assert created.status_code == 201, created.text
    assert traceparent(sql, created.json()["run_id"]) == CALLER
    plain = api.client.post("/v1/runs", json={"workflow": ECHO}, headers=api.acme)
    assert traceparent(sql, plain.json()["run_id"]) is None


def test_an_invalid_header_starts_no_trace_and_is_no_error(api, sql) -> None:
    response = api.client.post("/v1/runs", json={"workflow": ECHO},
                               headers={**api.acme, "traceparent": "00-nonsense-01"})
    assert response.status_code == 201, response.text
    assert traceparent(sql, response.json()["run_id"]) is None


def test_each_run_of_a_batch_joins_the_callers_trace(api, sql) -> None:
    response = api.client.post("/v1/runs/batch", json={"runs": [
        {"workflow": ECHO, "inputs": {"i": 1}}, {"workflow": ECHO, "inputs": {"i": 2}}]},
        headers={**api.acme, "traceparent": CALLER})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [traceparent(sql, r["run_id"]) for r in results] == [CALLER, CALLER]


def test_a_child_run_continues_its_parents_trace(api, sql) -> None:
    child = {"name": "traced-child", "nodes": {"c": {"executor": "builtin.echo"}}}
    assert api.client.post("/v1/workflows", json=child, headers=api.admin).status_code == 201
    parent = {"name": "traced-parent", "nodes": {"sub": {"workflow": {"name": "traced-child"}}}}
    response = api.client.post("/v1/runs", json={"workflow": parent},
                               headers={**api.acme, "traceparent": CALLER})
    assert response.status_code == 201, response.text
    run_id = response.json()["run_id"]
    (row,) = sql.execute("SELECT traceparent FROM dagq.runs WHERE parent_run_id = %s",
                         (run_id,)).fetchall()
    assert row["traceparent"] == CALLER


def test_a_bad_explicit_traceparent_is_refused_and_writes_nothing(api, sql) -> None:
    before = count_rows(sql, "runs")
    with pytest.raises(InvalidRequest, match="W3C traceparent"):
        service.submit(api.repo, tenant="acme", workflow=ECHO, traceparent="not-a-trace")
    assert count_rows(sql, "runs") == before
    result = service.submit(api.repo, tenant="acme", workflow=ECHO, traceparent=CALLER)
    assert traceparent(sql, str(result.run_id)) == CALLER
