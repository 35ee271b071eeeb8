"""Every client error class, each produced by a real request to the real API, and the
retry rules: what is sent again (idempotent calls, unsent requests) and what never is."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from dagq import Client
from dagq.client import RetryPolicy
from dagq.errors import (
    ApiError,
    Conflict,
    DagqError,
    Forbidden,
    InvalidRequest,
    InvalidWorkflow,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
)
from tests.harness.drive import drive
from tests.harness.live_api import CHAIN, CountingTransport, LiveApi
from tests.harness.procs import free_port

FAST = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.05)


def raised(exc_type: type[ApiError], call) -> ApiError:
    with pytest.raises(exc_type) as info:
        call()
    error = info.value
    assert isinstance(error, ApiError) and isinstance(error, DagqError)
    assert isinstance(error.message, str) and error.message and str(error) == error.message
    return error


def test_unauthorized_forbidden_not_found(api: LiveApi, monkeypatch) -> None:
    with Client(api.url, "not-a-key") as stranger:
        error = raised(Unauthorized, lambda: stranger.run(uuid.uuid4()))
        assert (error.status, error.code) == (401, "unauthorized")
    monkeypatch.delenv("DAGQ_API_KEY", raising=False)
    with Client(api.url) as anonymous:
        assert raised(Unauthorized, anonymous.queues).status == 401
    with Client(api.url, api.acme) as tenant:
        error = raised(Forbidden, lambda: tenant.register_workflow(CHAIN))
        assert (error.status, error.code) == (403, "forbidden")
        error = raised(NotFound, lambda: tenant.run(uuid.uuid4()))
        assert (error.status, error.code) == (404, "not_found")
        assert raised(NotFound, lambda: tenant.run("not-a-uuid")).status == 404
        assert raised(NotFound, lambda: tenant.schedule(uuid.uuid4())).status == 404
        assert raised(NotFound, lambda: tenant.workflow("absent")).status == 404
    with Client(api.url, api.globex) as other:  # another tenant's run does not exist
        with Client(api.url, api.acme) as owner:
            run_id = owner.submit(CHAIN).run_id
        assert raised(NotFound, lambda: other.run(run_id)).code == "not_found"
        assert raised(NotFound, lambda: next(other.events(run_id))).status == 404


def test_conflict_and_invalid_request(api: LiveApi) -> None:
    with Client(api.url, api.admin) as client:
        client.submit(CHAIN, {"n": 1}, event_key="k")
        error = raised(Conflict, lambda: client.submit(CHAIN, {"n": 2}, event_key="k"))
        assert (error.status, error.code) == (409, "conflict") and error.details["run_id"]
        error = raised(InvalidWorkflow, lambda: client.register_workflow(
            {"name": "empty", "nodes": {}}))
        assert (error.status, error.code) == (422, "invalid_workflow")
        error = raised(InvalidRequest, lambda: client.submit(CHAIN, deadline_s=-1))
        assert (error.status, error.code) == (422, "invalid_request")
        assert error.details and error.details[0]["loc"]


def test_payload_too_large(db_url: str) -> None:
    with LiveApi(db_url, max_body_bytes=512) as api, Client(api.url, api.acme) as client:
        error = raised(PayloadTooLarge, lambda: client.submit(CHAIN, {"text": "x" * 4000}))
        assert (error.status, error.code) == (413, "payload_too_large")
        assert error.details["max_bytes"] == 512
        assert client.submit(CHAIN, {"text": "short"}).created  # the client still works


def test_database_down_is_503_retried_for_safe_calls_only(api: LiveApi) -> None:
    with Client(api.url, api.acme) as client:
        run_id = client.submit(CHAIN).run_id  # (also caches the key in the API)
    api.repo.db.retry_s = 0.2  # the API gives up on its database after 0.2 s, not 5 s
    api.repo.db.pool.close()  # its database is gone
    transport = CountingTransport()
    with Client(api.url, api.acme, retry_policy=FAST, transport=transport) as client:
        error = raised(Unavailable, lambda: client.run(run_id))
        assert (error.status, error.code) == (503, "database_unavailable")
        assert len(transport.requests) == 3  # GET: retried
        transport.requests.clear()
        raised(Unavailable, lambda: client.cancel(run_id))
        assert len(transport.requests) == 3  # cancel is idempotent
        transport.requests.clear()
        raised(Unavailable, lambda: client.submit(CHAIN))
        assert len(transport.requests) == 1  # it may have been stored: never sent twice
        transport.requests.clear()
        raised(Unavailable, lambda: client.submit(CHAIN, event_key="safe"))
        assert len(transport.requests) == 3  # the event key makes a resend harmless


class LostReply(CountingTransport):
    """The first request whose path ends with `suffix` reaches the server; then `meanwhile`
    runs and the client gets a read timeout instead of the reply."""

    def __init__(self, suffix: str, meanwhile: Callable[[], Any]) -> None:
        super().__init__()
        self.suffix, self.meanwhile, self.lost = suffix, meanwhile, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if self.lost or not request.url.path.endswith(self.suffix):
            return response
        self.lost += 1
        response.read()
        response.close()
        self.meanwhile()
        raise httpx.ReadTimeout("timed out waiting for the reply", request=request)


def test_a_retry_whose_reply_was_lost_is_not_sent_again(api: LiveApi) -> None:
    """Retrying a run is not idempotent: had the lost reply been resent, the run, which
    failed again in between, would have been requeued again and its node run a third
    time."""
    attempts: list[dict] = []

    def failing(payload: dict) -> None:
        attempts.append(payload)
        raise ZeroDivisionError("division by zero")

    flaky = {"name": "flaky", "defaults": {"max_attempts": 1},
             "nodes": {"a": {"executor": "builtin.echo"}}}
    with Client(api.url, api.acme) as client:
        run_id = client.submit(flaky).run_id
    drive(api.repo, {"a": failing})
    transport = LostReply("/retry", lambda: drive(api.repo, {"a": failing}))
    with Client(api.url, api.acme, retry_policy=FAST, transport=transport) as client:
        error = raised(Unavailable, lambda: client.retry(run_id))
        drive(api.repo, {"a": failing})  # whatever a second retry would have requeued
        assert client.run(run_id).status == "failed"
    assert len(attempts) == 2  # the first run, and the one retry that reached the server
    assert [r.url.path for r in transport.requests].count(f"/v1/runs/{run_id}/retry") == 1
    assert error.status is None and error.code == "connection_error"
    assert "timed out (after sending it: it may have taken effect)" in error.message
    assert error.details["sent"] is True


def test_nothing_listening_is_unavailable_and_retried_even_for_submit(monkeypatch) -> None:
    transport = CountingTransport()
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, "key", retry_policy=FAST, transport=transport) as client:
        error = raised(Unavailable, lambda: client.submit(CHAIN))
    assert error.status is None and error.code == "connection_error"
    assert url in error.message and "may have taken effect" not in error.message
    assert error.details["sent"] is False
    assert len(transport.requests) == 3  # never reached a server: safe to send again
    monkeypatch.setenv("DAGQ_URL", url)
    monkeypatch.setenv("DAGQ_API_KEY", "from-env")
    with Client(retry_policy=FAST) as from_env:
        assert from_env.url == url
        raised(Unavailable, from_env.queues)


def test_a_url_is_required(monkeypatch) -> None:
    monkeypatch.delenv("DAGQ_URL", raising=False)
    with pytest.raises(ValueError, match="DAGQ_URL"):
        Client()
    with pytest.raises(ValueError, match="http"):
        Client("127.0.0.1:8000")
