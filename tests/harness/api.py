"""The API in process for the tests: the app on the per-test database,
driven by Starlette's TestClient (which runs the lifespan), with keys for two tenants; and
the checks the API tests share (the error shape, row counts, /metrics samples)."""

from __future__ import annotations

import warnings
from typing import Any

import psycopg.sql
from prometheus_client.parser import text_string_to_metric_families

from dagq import service
from dagq.api.app import create_app
from dagq.config import Settings
from dagq.store import Store

with warnings.catch_warnings():  # Starlette >= 1.x nudges towards httpx2; httpx works
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

ECHO_FLOW = {
    "name": "flow",
    "nodes": {
        "a": {"executor": "builtin.echo"},
        "b": {"executor": "builtin.echo", "depends_on": ["a"]},
        "c": {"executor": "builtin.merge", "depends_on": ["b"]},
    },
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Api:
    """`client` plus headers: `admin` (tenant acme, admin), `acme` and `globex` (tenants)."""

    def __init__(self, db_url: str, **settings: Any) -> None:
        options: dict[str, Any] = {"database_url": db_url, "auth": "on", "pool_size": 8}
        options.update(settings)
        self.settings = Settings(_env_file=None, **options)  # type: ignore[call-arg]
        self.app = create_app(self.settings, db_url)
        self.app.state.metrics.settle_s = 0.0
        self.client = TestClient(self.app)

    def __enter__(self) -> Api:
        self.client.__enter__()
        self.repo: Store = self.app.state.repo
        self.admin = bearer(service.create_api_key(self.repo, "acme", admin=True))
        self.acme = bearer(service.create_api_key(self.repo, "acme"))
        self.globex = bearer(service.create_api_key(self.repo, "globex"))
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.__exit__(*exc)

    def submit(self, headers: dict[str, str], **body: Any) -> dict[str, Any]:
        body.setdefault("workflow", ECHO_FLOW)
        response = self.client.post("/v1/runs", json=body, headers=headers)
        assert response.status_code in (200, 201), response.text
        return response.json()


def declare_queues(repo: Store, *queues: str, worker: str = "w-queues") -> None:
    """A worker that serves `queues` registers (a node may only name a declared queue)."""
    repo.fleet.register_worker(worker=worker, hostname="host", pid=1, queues=list(queues),
                               threads=1, executors=[])


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The contract's error shape, with the expected status (and code)."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def count_rows(sql: Any, table: str) -> int:
    statement = psycopg.sql.SQL("SELECT count(*) AS n FROM {}").format(
        psycopg.sql.Identifier("dagq", table))
    return sql.execute(statement).fetchone()["n"]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found
