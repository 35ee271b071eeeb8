"""/v1/runs in process against a real Postgres: submit, idempotency, reads, pagination,
cancel, retry, tenant isolation and the error paths (which must write nothing)."""

from __future__ import annotations

import uuid

from tests.harness.api import ECHO_FLOW, Api, assert_error, count_rows
from tests.harness.drive import drive


def test_submit_inline_then_read_with_nodes(api: Api) -> None:
    created = api.client.post("/v1/runs", headers=api.acme,
                              json={"workflow": ECHO_FLOW, "inputs": {"q": "hi"}})
    assert created.status_code == 201
    body = created.json()
    assert body["status"] == "queued" and body["created"] is True
    run_id = body["run_id"]
    drive(api.repo)
    run = api.client.get(f"/v1/runs/{run_id}", headers=api.acme).json()
    assert run["run_id"] == run_id and run["status"] == "succeeded"
    assert run["inputs"] == {"q": "hi"} and run["tenant"] == "acme"
    assert [n["key"] for n in run["nodes"]] == ["a", "b", "c"]
    for node in run["nodes"]:
        assert {"key", "executor", "status", "attempts", "max_attempts", "queued_at",
                "started_at", "finished_at", "duration_ms", "outputs", "error"} <= set(node)
        assert node["status"] == "succeeded" and node["attempts"] == 1
        assert node["duration_ms"] is not None and node["duration_ms"] >= 0


def test_submit_registered_workflow_by_name_and_version(api: Api) -> None:
    assert api.client.post("/v1/workflows", json=ECHO_FLOW, headers=api.admin).status_code \
        == 201
    changed = {**ECHO_FLOW, "nodes": {"only": {"executor": "builtin.noop"}}}
    assert api.client.post("/v1/workflows", json=changed, headers=api.admin).json() == {
        "name": "flow", "version": 2}
    latest = api.submit(api.acme, workflow="flow")
    first = api.submit(api.acme, workflow="flow", version=1)
    assert api.repo.runs.get_run(uuid.UUID(latest["run_id"])).workflow_version == 2
    run = api.client.get(f"/v1/runs/{first['run_id']}", headers=api.acme).json()
    assert run["workflow_version"] == 1 and len(run["nodes"]) == 3
    assert_error(api.client.post("/v1/runs", json={"workflow": "nope"}, headers=api.acme),
                 404, "not_found")
    assert_error(api.client.post("/v1/runs", json={"workflow": "flow", "version": 9},
                                 headers=api.acme), 404)
    assert_error(api.client.post("/v1/runs", json={"workflow": ECHO_FLOW, "version": 1},
                                 headers=api.acme), 422, "invalid_request")


def test_same_event_key_returns_the_same_run(api: Api, sql) -> None:
    first = api.client.post("/v1/runs", headers=api.acme, json={
        "workflow": ECHO_FLOW, "inputs": {"n": 1}, "event_key": "order-1"})
    again = api.client.post("/v1/runs", headers=api.acme, json={
        "workflow": ECHO_FLOW, "inputs": {"n": 1}, "event_key": "order-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == {**first.json(), "created": False}
    other = api.client.post("/v1/runs", headers=api.acme, json={
        "workflow": ECHO_FLOW, "inputs": {"n": 2}, "event_key": "order-1"})
    error = assert_error(other, 409, "conflict")
    assert error["details"] == {"run_id": first.json()["run_id"]}
    # The same key in another tenant is another run.
    globex = api.client.post("/v1/runs", headers=api.globex, json={
        "workflow": ECHO_FLOW, "inputs": {"n": 1}, "event_key": "order-1"})
    assert globex.status_code == 201 and globex.json()["run_id"] != first.json()["run_id"]
    assert count_rows(sql, "runs") == 2


BAD_BODIES = [
    (b"", 400, "malformed_json"),
    (b"{", 400, "malformed_json"),
    (b"not json", 400, "malformed_json"),
    (b'{"workflow": NaN}', 400, "malformed_json"),
    (b"\xff\xfe\x00garbage", 400, "malformed_json"),
    (b"[" * 5000 + b"]" * 5000, 400, "malformed_json"),
    (b"[]", 422, "invalid_request"),
    (b"{}", 422, "invalid_request"),
    (b'{"workflow": 5}', 422, "invalid_request"),
    (b'{"workflow": "has space"}', 422, "invalid_request"),
    (b'{"workflow": "flow", "extra": 1}', 422, "invalid_request"),
    (b'{"workflow": "flow", "priority": "1"}', 422, "invalid_request"),
    (b'{"workflow": "flow", "priority": 5000}', 422, "invalid_request"),
    (b'{"workflow": "flow", "version": 99999999999}', 422, "invalid_request"),
    (b'{"workflow": "flow", "deadline_s": -1}', 422, "invalid_request"),
    (b'{"workflow": "flow", "event_key": ""}', 422, "invalid_request"),
    (b'{"workflow": {"name": "x", "nodes": {}}}', 422, "invalid_workflow"),
    (b'{"workflow": {"name": "x", "nodes": {"a": {"executor": "nope.nope"}}}}', 422,
     "invalid_workflow"),
    (b'{"workflow": {"name": "x", "nodes": {"a": {"executor": "builtin.noop", '
     b'"depends_on": ["b"]}, "b": {"executor": "builtin.noop", "depends_on": ["a"]}}}}',
     422, "invalid_workflow"),
    (b'{"workflow": "flow", "inputs": {"t": "nul\\u0000"}}', 422, "invalid_request"),
    (b'{"workflow": "flow", "event_key": "k\\u0000"}', 422, "invalid_request"),
    (b'{"workflow": "flow", "inputs": {"t": "\\ud800"}}', 422, "invalid_request"),
    (b'{"workflow": "flow", "inputs": {"\\u0000": 1}}', 422, "invalid_request"),
    (b'{"workflow": "flow", "inputs": 1e400}', 422, "invalid_request"),
    (b'{"workflow": "flow", "inputs": ' + b"[" * 100 + b"]" * 100 + b"}", 422,
     "invalid_request"),
]


def test_bad_submissions_are_rejected_and_write_nothing(api: Api, sql) -> None:
    api.client.post("/v1/workflows", json=ECHO_FLOW, headers=api.admin)
    for raw, status, code in BAD_BODIES:
        response = api.client.post("/v1/runs", content=raw, headers={
            **api.acme, "Content-Type": "application/json"})
        assert_error(response, status, code)
    assert count_rows(sql, "runs") == 0 and count_rows(sql, "node_tasks") == 0
    assert count_rows(sql, "run_events") == 0


def test_validation_errors_name_the_field(api: Api) -> None:
    error = assert_error(api.client.post("/v1/runs", json={"workflow": "flow",
                                                           "priority": 5000},
                                         headers=api.acme), 422)
    assert "priority" in error["message"]
    assert error["details"][0]["loc"] == ["body", "priority"]
    cycle = {"name": "x", "nodes": {"a": {"executor": "builtin.noop", "depends_on": ["a"]}}}
    error = assert_error(api.client.post("/v1/runs", json={"workflow": cycle},
                                         headers=api.acme), 422)
    assert "depends on itself" in error["message"]


def test_body_over_the_limit_is_413_before_parsing(db_url: str, sql) -> None:
    with Api(db_url, max_body_bytes=2000) as api:
        big = {"workflow": ECHO_FLOW, "inputs": {"blob": "x" * 5000}}
        assert_error(api.client.post("/v1/runs", json=big, headers=api.acme), 413,
                     "payload_too_large")

        def chunks():  # no Content-Length: counted while streaming
            yield b'{"workflow": "flow", "inputs": {"blob": "'
            for _ in range(10):
                yield b"x" * 500
            yield b'"}}'

        response = api.client.post("/v1/runs", content=chunks(), headers={
            **api.acme, "Content-Type": "application/json"})
        assert_error(response, 413, "payload_too_large")
        assert_error(api.client.post("/v1/workflows", content=b"{" * 3000,
                                     headers=api.admin), 413)
        assert count_rows(sql, "runs") == 0 and count_rows(sql, "workflows") == 0
        # Under the limit still works.
        assert api.client.post("/v1/runs", json={"workflow": ECHO_FLOW},
                               headers=api.acme).status_code == 201


def test_tenants_see_only_their_runs_and_admins_see_all(api: Api) -> None:
    mine = api.submit(api.acme)["run_id"]
    theirs = api.submit(api.globex)["run_id"]
    for path in (f"/v1/runs/{mine}", f"/v1/runs/{mine}/events",
                 f"/v1/runs/{mine}/events?format=json"):
        assert_error(api.client.get(path, headers=api.globex), 404, "not_found")
    for action in ("cancel", "retry"):
        assert_error(api.client.post(f"/v1/runs/{mine}/{action}", headers=api.globex), 404)
    assert api.repo.runs.get_run(uuid.UUID(mine)).status == "queued"  # globex changed nothing
    listed = api.client.get("/v1/runs", headers=api.globex).json()["runs"]
    assert [r["run_id"] for r in listed] == [theirs]
    everyone = api.client.get("/v1/runs", headers=api.admin).json()["runs"]
    assert {r["run_id"] for r in everyone} == {mine, theirs}
    only = api.client.get("/v1/runs?tenant=globex", headers=api.admin).json()["runs"]
    assert [r["run_id"] for r in only] == [theirs]
    # A tenant cannot widen its view with ?tenant=.
    assert [r["run_id"] for r in api.client.get(
        "/v1/runs?tenant=acme", headers=api.globex).json()["runs"]] == [theirs]
    assert api.client.get(f"/v1/runs/{mine}", headers=api.admin).status_code == 200


def test_keyset_pagination_newest_first(api: Api) -> None:
    ids = [api.submit(api.acme, inputs={"i": i})["run_id"] for i in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        url = "/v1/runs?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = api.client.get(url, headers=api.acme).json()
        seen += [r["run_id"] for r in page["runs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # A run submitted between pages appears on none of the later pages.
        if pages == 1:
            api.submit(api.acme)
    assert pages == 3 and seen == list(reversed(ids))


def test_list_filters_and_bad_query_params(api: Api) -> None:
    done = api.submit(api.acme)["run_id"]
    drive(api.repo)
    waiting = api.submit(api.acme)["run_id"]
    api.client.post("/v1/workflows", json={**ECHO_FLOW, "name": "other"}, headers=api.admin)
    other = api.submit(api.acme, workflow="other")["run_id"]

    def ids(query: str) -> list[str]:
        response = api.client.get(f"/v1/runs?{query}", headers=api.acme)
        assert response.status_code == 200, response.text
        return [r["run_id"] for r in response.json()["runs"]]

    assert ids("status=succeeded") == [done]
    assert ids("status=queued") == [other, waiting]
    assert ids("workflow=other") == [other]
    assert ids("workflow=flow&status=queued") == [waiting]
    for bad in ("status=bogus", "limit=0", "limit=501", "limit=abc", "cursor=%%%",
                "cursor=bm90LWEtY3Vyc29y", "workflow=a%20b", "workflow=%00"):
        assert_error(api.client.get(f"/v1/runs?{bad}", headers=api.acme), 422,
                     "invalid_request")


def test_unknown_or_malformed_run_ids_are_404(api: Api) -> None:
    for run_id in (str(uuid.uuid4()), "not-a-uuid", "1", "%00"):
        assert_error(api.client.get(f"/v1/runs/{run_id}", headers=api.acme), 404)
        assert_error(api.client.post(f"/v1/runs/{run_id}/cancel", headers=api.acme), 404)


def test_cancel_queued_run_then_again_then_finished_is_409(api: Api) -> None:
    run_id = api.submit(api.acme)["run_id"]
    response = api.client.post(f"/v1/runs/{run_id}/cancel", headers=api.acme)
    assert response.status_code == 202
    assert response.json() == {"run_id": run_id, "status": "cancelled"}
    assert api.client.post(f"/v1/runs/{run_id}/cancel", headers=api.acme).status_code == 202
    run = api.client.get(f"/v1/runs/{run_id}", headers=api.acme).json()
    assert run["status"] == "cancelled"
    assert {n["status"] for n in run["nodes"]} == {"cancelled"}
    done = api.submit(api.acme)["run_id"]
    drive(api.repo)
    assert_error(api.client.post(f"/v1/runs/{done}/cancel", headers=api.acme), 409,
                 "conflict")


def test_retry_failed_run_and_409_when_not_retryable(api: Api) -> None:
    flaky = {"name": "flaky", "nodes": {
        "a": {"executor": "builtin.echo"},
        "b": {"executor": "builtin.fail", "depends_on": ["a"], "max_attempts": 1}}}
    run_id = api.submit(api.acme, workflow=flaky)["run_id"]
    assert_error(api.client.post(f"/v1/runs/{run_id}/retry", headers=api.acme), 409,
                 "conflict")  # still queued

    def boom(payload):
        raise RuntimeError("no")

    drive(api.repo, {"b": boom})
    failed = api.client.get(f"/v1/runs/{run_id}", headers=api.acme).json()
    assert failed["status"] == "failed" and failed["error"]["node"] == "b"
    response = api.client.post(f"/v1/runs/{run_id}/retry", headers=api.acme)
    assert response.status_code == 202 and response.json()["status"] == "running"
    assert drive(api.repo) == ["b"]
    assert api.client.get(f"/v1/runs/{run_id}", headers=api.acme).json()["status"] \
        == "succeeded"
    assert_error(api.client.post(f"/v1/runs/{run_id}/retry", headers=api.acme), 409)


def test_priority_and_deadline_are_stored(api: Api) -> None:
    run_id = api.submit(api.acme, priority=7, deadline_s=60)["run_id"]
    run = api.client.get(f"/v1/runs/{run_id}", headers=api.acme).json()
    assert run["priority"] == 7 and run["deadline_at"] is not None


def test_event_keys_reserved_for_dagq_are_refused(api: Api, sql) -> None:
    """`dagq.`-prefixed keys are dagq's own (a sub-workflow node's child run): taken by a
    client first, they would tie that node to an unrelated run."""
    refused = api.client.post("/v1/runs", headers=api.acme, json={
        "workflow": ECHO_FLOW, "event_key": "dagq.child:x:y:1:2.3"})
    assert_error(refused, 422, "invalid_request")
    batch = api.client.post("/v1/runs/batch", headers=api.acme, json={"runs": [
        {"workflow": ECHO_FLOW, "event_key": "dagq.anything"},
        {"workflow": ECHO_FLOW, "event_key": "mine"}]})
    assert batch.status_code == 200, batch.text
    first, second = batch.json()["results"]
    assert "error" in first and "reserved" in first["error"]["message"]
    assert second.get("created") is True
    assert count_rows(sql, "runs") == 1
