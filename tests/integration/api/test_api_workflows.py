"""/v1/workflows and authentication: admin-only registration, versions, 401/403, and
DAGQ_AUTH=off."""

from __future__ import annotations

import pytest

from tests.harness.api import ECHO_FLOW, Api, assert_error, bearer, count_rows


def test_register_versions_and_read(api: Api) -> None:
    first = api.client.post("/v1/workflows", json=ECHO_FLOW, headers=api.admin)
    assert first.status_code == 201 and first.json() == {"name": "flow", "version": 1}
    same = api.client.post("/v1/workflows", json=ECHO_FLOW, headers=api.admin)
    assert same.status_code == 200 and same.json() == first.json()
    changed = {**ECHO_FLOW, "fail_fast": False}
    assert api.client.post("/v1/workflows", json=changed, headers=api.admin).json() == {
        "name": "flow", "version": 2}
    latest = api.client.get("/v1/workflows/flow", headers=api.acme).json()
    assert latest["version"] == 2 and latest["spec"]["fail_fast"] is False
    assert set(latest["spec"]["nodes"]) == {"a", "b", "c"}
    v1 = api.client.get("/v1/workflows/flow?version=1", headers=api.acme).json()
    assert v1["version"] == 1 and v1["spec"]["fail_fast"] is True
    listed = api.client.get("/v1/workflows", headers=api.globex).json()["workflows"]
    assert [(w["name"], w["version"]) for w in listed] == [("flow", 2)]


def test_workflow_read_errors(api: Api) -> None:
    api.client.post("/v1/workflows", json=ECHO_FLOW, headers=api.admin)
    assert_error(api.client.get("/v1/workflows/nope", headers=api.acme), 404, "not_found")
    assert_error(api.client.get("/v1/workflows/flow?version=7", headers=api.acme), 404)
    assert_error(api.client.get("/v1/workflows/bad%00name", headers=api.acme), 404)
    assert_error(api.client.get("/v1/workflows/flow%0A", headers=api.acme), 404)
    for bad in ("abc", "0", "-1", "99999999999"):
        assert_error(api.client.get(f"/v1/workflows/flow?version={bad}", headers=api.acme),
                     422, "invalid_request")


def test_only_admin_keys_register_workflows(api: Api, sql) -> None:
    error = assert_error(api.client.post("/v1/workflows", json=ECHO_FLOW, headers=api.acme),
                         403, "forbidden")
    assert "admin" in error["message"]
    assert count_rows(sql, "workflows") == 0


@pytest.mark.parametrize(("spec", "needle"), [
    ({"name": "x", "nodes": {"a": {"executor": "builtin.noop", "depends_on": ["b"]},
                             "b": {"executor": "builtin.noop", "depends_on": ["a"]}}},
     "cycle"),
    ({"name": "x", "nodes": {"a": {"executor": "builtin.noop", "depends_on": ["zz"]}}},
     "unknown node"),
    ({"name": "x", "nodes": {"a": {"executor": "who.knows"}}}, "unknown executor"),
    ({"name": "x", "nodes": {}}, "at least one node"),
    ({"name": "bad name", "nodes": {"a": {"executor": "builtin.noop"}}}, "name"),
    ({"name": "x", "nodes": {"a": {"executor": "builtin.noop",
                                   "if": {"dep": "b", "path": "p", "in": [1]}},
                             "b": {"executor": "builtin.noop"}}}, "not one of its"),
    ([1, 2], "JSON object"),
])
def test_invalid_specs_are_422_naming_the_problem(api: Api, sql, spec, needle) -> None:
    error = assert_error(api.client.post("/v1/workflows", json=spec, headers=api.admin),
                         422, "invalid_workflow")
    assert needle in error["message"]
    assert count_rows(sql, "workflows") == 0


def test_malformed_registration_body_is_400(api: Api) -> None:
    assert_error(api.client.post("/v1/workflows", content=b'{"name": ',
                                 headers=api.admin), 400, "malformed_json")


V1_ROUTES = [
    ("GET", "/v1/workflows"), ("POST", "/v1/workflows"), ("GET", "/v1/workflows/flow"),
    ("GET", "/v1/runs"), ("POST", "/v1/runs"),
    ("GET", "/v1/runs/00000000-0000-0000-0000-000000000001"),
    ("GET", "/v1/runs/00000000-0000-0000-0000-000000000001/events"),
    ("POST", "/v1/runs/00000000-0000-0000-0000-000000000001/cancel"),
    ("POST", "/v1/runs/00000000-0000-0000-0000-000000000001/retry"),
    ("GET", "/v1/queues"),
]


def test_every_v1_route_needs_a_valid_key(api: Api, sql) -> None:
    for method, path in V1_ROUTES:
        for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"},
                        bearer("dagq_not-a-real-key"), bearer("x" * 500),
                        {"Authorization": "Bearer dagq_\u00e9t\u00e9".encode("utf-8")}):
            response = api.client.request(method, path, headers=headers,
                                          json={"workflow": ECHO_FLOW})
            assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"] == "Bearer"
    assert count_rows(sql, "runs") == 0 and count_rows(sql, "workflows") == 0


def test_revoked_key_is_401(api: Api, sql) -> None:
    assert api.client.get("/v1/runs", headers=api.acme).status_code == 200
    sql.execute("UPDATE dagq.api_keys SET revoked_at = now() WHERE tenant = 'acme' "
                "AND NOT admin")
    # Valid keys are cached for a few seconds: within that time the key still works...
    assert api.client.get("/v1/runs", headers=api.acme).status_code == 200
    api.app.state.keys.ttl_s = 0  # ...and once its entry is stale, it is refused.
    assert_error(api.client.get("/v1/runs", headers=api.acme), 401)


def test_auth_off_acts_as_admin_of_default(db_url: str) -> None:
    with Api(db_url, auth="off") as api:
        assert api.client.post("/v1/workflows", json=ECHO_FLOW).status_code == 201
        run_id = api.client.post("/v1/runs", json={"workflow": "flow"}).json()["run_id"]
        run = api.client.get(f"/v1/runs/{run_id}").json()
        assert run["tenant"] == "default"
        tenant_run = api.submit(api.globex)["run_id"]  # a key still means its tenant
        assert api.client.get(f"/v1/runs/{tenant_run}").status_code == 200
        assert_error(api.client.get(f"/v1/runs/{run_id}", headers=api.globex), 404)
        assert_error(api.client.get("/v1/runs", headers=bearer("dagq_wrong")), 401)
