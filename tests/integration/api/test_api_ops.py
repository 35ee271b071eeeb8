"""Operations routes: /healthz, /readyz, /metrics, /v1/queues, the OpenAPI document and
pages, and the error shape of everything that is not a /v1 domain error."""

from __future__ import annotations

import re
from datetime import timedelta

from dagq.api.openapi import openapi_document
from dagq.api.routes.ops import NO_WORKER_WARNING
from tests.harness import pg
from tests.harness.api import ECHO_FLOW, Api, TestClient, assert_error, declare_queues, samples
from tests.harness.drive import complete, drive


def test_health_and_readiness(api: Api, sql) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").json() == {
        "status": "ready", "pending_migrations": [], "workers": 0,
        "warnings": [NO_WORKER_WARNING]}  # ready: the API does not depend on workers
    latest = sql.execute("SELECT max(version) AS v FROM dagq.schema_migrations").fetchone()["v"]
    sql.execute("DELETE FROM dagq.schema_migrations WHERE version = %s", (latest,))
    error = assert_error(api.client.get("/readyz"), 503, "not_ready")
    assert error["details"] == {"pending_migrations": [latest]}
    assert api.client.get("/healthz").status_code == 200


def test_readyz_is_503_fast_when_the_database_is_gone(pg_server: pg.TestServer) -> None:
    url = pg_server.new_database()
    try:
        with Api(url) as api:
            assert api.client.get("/readyz").status_code == 200
            pg_server.drop_database(url)  # terminates the pool's connections
            response = api.client.get("/readyz")
            error = assert_error(response, 503, "not_ready")
            assert "database" in error["message"]
            assert response.elapsed < timedelta(seconds=10)
            assert api.client.get("/healthz").status_code == 200
    finally:
        pg_server.drop_database(url)


def test_queues_report_ready_delayed_running_and_failures(api: Api, sql) -> None:
    wide = {"name": "wide", "nodes": {
        f"n{i}": {"executor": "builtin.echo", "max_attempts": 1} for i in range(4)}}
    api.submit(api.acme, workflow=wide)
    declare_queues(api.repo, "side")
    api.submit(api.acme, workflow={"name": "side", "nodes": {
        "x": {"executor": "builtin.echo", "queue": "side"}}})
    leased = api.repo.leases.lease(worker="w", queue="default", limit=2, ttl_s=30)
    # n0 fails for good: fail-fast cancels the waiting n2 and n3; n1 is still running.
    api.repo.leases.fail(leased[0].id, leased[0].version, {"type": "E", "message": "m"})
    sql.execute("UPDATE dagq.node_tasks SET available_at = now() - interval '30 seconds' "
                "WHERE node_key = 'x'")
    response = api.client.get("/v1/queues", headers=api.acme)
    assert response.status_code == 200
    queues = {q["name"]: q for q in response.json()["queues"]}
    default = queues["default"]
    assert default["failed_last_hour"] == 1 and default["running"] == 1
    assert default["queued"] == 0 and default["delayed"] == 0
    side = queues["side"]
    assert side["queued"] == 1 and side["running"] == 0
    assert 29 <= side["oldest_queued_age_s"] < 120


def test_queue_delayed_counts_backoff(api: Api) -> None:
    flow = {"name": "slow", "nodes": {"a": {"executor": "builtin.fail",
                                            "backoff": {"initial_s": 600, "max_s": 600}}}}
    api.submit(api.acme, workflow=flow)
    api.submit(api.acme, workflow={"name": "ready", "nodes": {"b": {"executor": "builtin.noop"}}})
    [node] = api.repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    assert node.node_key == "a"
    assert api.repo.leases.fail(node.id, node.version, {"type": "E", "message": "m"}) == "retry"
    [default] = [q for q in api.client.get("/v1/queues", headers=api.acme).json()["queues"]
                 if q["name"] == "default"]
    assert (default["queued"], default["delayed"], default["running"]) == (1, 1, 0)


def test_metrics_follow_postgres(api: Api, sql) -> None:
    first = api.client.get("/metrics")
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/plain")
    for i in range(3):
        api.submit(api.acme, inputs={"i": i})
    api.client.post("/v1/runs", json={"workflow": "missing"}, headers=api.acme)
    drive(api.repo)
    api.submit(api.acme)  # stays queued
    flaky = {"name": "lease", "nodes": {"z": {"executor": "builtin.sleep", "max_attempts": 2}}}
    api.submit(api.acme, workflow=flaky)
    api.repo.leases.lease(worker="gone", queue="default", limit=10, ttl_s=30)
    sql.execute("UPDATE dagq.node_tasks SET lease_expires_at = now() - interval '1 second' "
                "WHERE status = 'running'")
    assert api.repo.maintenance.reclaim_expired()["reclaimed"] >= 1
    m = samples(api.client.get("/metrics").text)
    assert m[("dagq_runs_submitted_total", ())] == 5
    assert m[("dagq_runs_finished_total", (("status", "succeeded"),))] == 3
    assert m[("dagq_lease_reclaims_total", ())] >= 1
    assert m[("dagq_api_submissions_total", (("result", "created"),))] == 5
    assert m[("dagq_api_submissions_total", (("result", "rejected"),))] == 1
    assert m[("dagq_node_duration_seconds_count",
              (("executor", "builtin.echo"), ("status", "succeeded")))] == 6
    assert m[("dagq_runs", (("status", "queued"),))] + m[("dagq_runs",
                                                          (("status", "running"),))] == 2
    assert m[("dagq_nodes", (("status", "pending"),))] == 2  # b and c of the queued run
    assert m[("dagq_queue_delayed", (("queue", "default"),))] == 2  # both reclaimed
    assert ("dagq_queue_oldest_age_seconds", (("queue", "default"),)) in m
    assert m[("dagq_api_requests_total", (("method", "POST"), ("route", "/v1/runs"),
                                          ("status", "201")))] == 5
    # Route templates, never raw ids, label requests.
    assert not any("route" in dict(labels) and re.search(r"[0-9a-f]{8}-", dict(labels)["route"])
                   for _, labels in m)


def test_openapi_document_covers_every_route(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    assert doc == openapi_document() and doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, item in doc["paths"].items()
                  for method in item}
    for route in api.app.routes:
        for method in getattr(route, "methods", None) or ():
            # HTML pages (the dashboard, the docs, a respond link's form page) are not API.
            if method == "HEAD" or route.path in ("/", "/docs", "/openapi.json",
                                                  "/respond/{token}"):
                continue
            assert (route.path, method) in documented, (route.path, method)
    for path, item in doc["paths"].items():
        for op in item.values():
            assert ("security" in op) == path.startswith("/v1"), path
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}


def test_docs_and_index_pages_need_no_internet(api: Api) -> None:
    docs = api.client.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in docs.text
    assert not re.search(r"""(src|href)=["']https?://""", docs.text)
    index = api.client.get("/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")


def test_unknown_routes_and_methods_use_the_error_shape(api: Api) -> None:
    assert_error(api.client.get("/v1/nothing", headers=api.acme), 404, "not_found")
    assert_error(api.client.delete("/v1/runs", headers=api.acme), 405, "method_not_allowed")
    assert_error(api.client.get("/static/nothing.js"), 404)
    assert_error(api.client.post("/v1/runs", headers={**api.acme, "Content-Length": "x"},
                                 content=b"{}"), 400)


def test_unexpected_errors_are_a_json_500_without_traceback(api: Api) -> None:
    client = TestClient(api.app, raise_server_exceptions=False)

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    api.repo.runs.list_runs = broken  # a bug, not a client input
    response = client.get("/v1/runs", headers=api.acme)
    assert_error(response, 500, "internal")
    assert "secret" not in response.text and "Traceback" not in response.text


def test_database_down_during_a_request_is_503(api: Api) -> None:
    from dagq.errors import DatabaseUnavailable

    def unavailable(*args, **kwargs):
        raise DatabaseUnavailable("database unavailable: connection refused")

    api.repo.workflows.get_workflow = unavailable
    assert_error(api.client.post("/v1/runs", json={"workflow": "flow"}, headers=api.acme),
                 503, "database_unavailable")
    assert api.client.post("/v1/runs", json={"workflow": ECHO_FLOW},
                           headers=api.acme).status_code == 201


def test_metrics_count_stale_completions(api: Api) -> None:
    from tests.harness.specs import spec

    api.repo.submissions.submit_run(tenant="acme", spec=spec({"a": {"executor": "builtin.noop"}}))
    [node] = api.repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    complete(api.repo, node.id, node.version, {})
    complete(api.repo, node.id, node.version, {})  # a duplicate: ignored, and counted
    text = api.client.get("/metrics").text
    assert "dagq_stale_completions_total 1.0" in text


def test_metrics_say_how_long_event_partitions_last(api: Api) -> None:
    """Migration 025 made a week of day partitions ahead; the sweeper keeps it so."""
    text = api.client.get("/metrics").text
    [line] = [x for x in text.splitlines()
              if x.startswith("dagq_event_partitions_ahead_seconds ")]
    assert 7 * 86_400 <= float(line.split()[1]) <= 8 * 86_400
