"""HTTP hardening (issue 12): Content-Security-Policy, X-Content-Type-Options and
X-Frame-Options on every response (pages, static files, JSON, errors of every kind and
the SSE stream), a policy that allows exactly the /docs page's inline code, and `Allow`
on a 405 naming every method of the path."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from starlette.requests import Request
from starlette.routing import Route

from dagq.api.security import SECURITY_HEADERS
from tests.harness.api import Api, TestClient, assert_error
from tests.harness.drive import drive

# A small body limit: a 2 kB body is a 413.
pytestmark = pytest.mark.api_settings(max_body_bytes=1000)


def assert_hardened(response) -> None:
    headers = response.headers
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "*" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert {k.lower(): v for k, v in SECURITY_HEADERS.items()}.items() <= \
        {k.lower(): v for k, v in headers.items()}.items()


def test_pages_static_files_and_json_are_hardened(api: Api) -> None:
    for path in ("/", "/docs", "/openapi.json", "/static/app.js", "/static/dashboard.css",
                 "/healthz", "/readyz", "/metrics"):
        response = api.client.get(path)
        assert response.status_code == 200, path
        assert_hardened(response)
    for path in ("/v1/runs", "/v1/queues", "/v1/workflows", "/v1/schedules"):
        response = api.client.get(path, headers=api.acme)
        assert response.status_code == 200, path
        assert_hardened(response)


def test_every_kind_of_error_is_hardened(api: Api) -> None:
    responses = {
        400: api.client.post("/v1/runs", headers={**api.acme, "Content-Type":
                                                  "application/json"}, content=b"{nope"),
        401: api.client.get("/v1/runs"),
        403: api.client.get("/v1/workers", headers=api.acme),
        404: api.client.get("/v1/runs/00000000-0000-0000-0000-000000000000",
                            headers=api.acme),
        405: api.client.delete("/v1/runs", headers=api.acme),
        413: api.client.post("/v1/runs", headers=api.acme, content=b"x" * 2000),
        422: api.client.get("/v1/runs?limit=0", headers=api.acme),
    }
    for status, response in responses.items():
        assert_error(response, status)
        assert_hardened(response)
    assert_hardened(api.client.get("/no/such/page"))


def test_a_server_error_is_hardened_too(db_url: str) -> None:
    """The Exception handler's 500 leaves Starlette outside every middleware."""
    async def boom(request: Request) -> None:
        raise RuntimeError("a bug")

    with Api(db_url) as api:
        api.app.router.routes.append(Route("/boom", boom))
        client = TestClient(api.app, raise_server_exceptions=False)
        response = client.get("/boom")
        assert_error(response, 500, "internal")
        assert_hardened(response)


def test_the_event_stream_is_hardened(api: Api) -> None:
    run_id = api.submit(api.acme)["run_id"]
    drive(api.repo)
    response = api.client.get(f"/v1/runs/{run_id}/events", headers=api.acme)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "event: run_succeeded" in response.text
    assert_hardened(response)


def test_the_policy_allows_exactly_the_docs_pages_inline_code(api: Api) -> None:
    page = api.client.get("/docs")
    csp = page.headers["content-security-policy"]
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        [body] = re.findall(rf"<{tag}>(.*?)</{tag}>", page.text, re.S)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        [sources] = [d for d in csp.split("; ") if d.startswith(directive + " ")]
        assert f"'sha256-{digest}'" in sources.split(), (tag, sources)
    # The dashboard page has no inline code at all: its script and style are files.
    index = api.client.get("/").text
    assert "<script>" not in index and "<style>" not in index and " style=" not in index
    assert not re.search(r"\son[a-z]+=", index)  # no inline event handlers


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("DELETE", "/v1/runs", "GET, HEAD, POST"),
    ("OPTIONS", "/v1/workflows", "GET, HEAD, POST"),
    ("PUT", "/v1/schedules", "GET, HEAD, POST"),
    ("PUT", "/v1/schedules/00000000-0000-0000-0000-000000000000", "DELETE, GET, HEAD"),
    ("POST", "/v1/runs/00000000-0000-0000-0000-000000000000", "GET, HEAD"),
])
def test_a_405_lists_every_method_of_the_path(api: Api, method: str, path: str,
                                              allowed: str) -> None:
    response = api.client.request(method, path, headers=api.acme)
    assert_error(response, 405, "method_not_allowed")
    assert {m.strip() for m in response.headers["allow"].split(",")} == \
        set(allowed.split(", "))


def test_static_files_never_leave_the_dashboard_directory(api: Api) -> None:
    """The dashboard's files may be links (an editable install), so the static route
    follows links; a path out of its directory is still a 404."""
    for path in ("/static/../config.py", "/static/%2e%2e/config.py",
                 "/static/%2e%2e/%2e%2e/api/app.py", "/static/..%2fconfig.py"):
        response = api.client.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert "Settings" not in response.text
