"""Client.emit / AsyncClient.emit and .event against the real API: the runs an event
started, idempotent by the event_id the client makes up, another tenant's a NotFound,
bad input the API's 422 as InvalidRequest."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from dagq import AsyncClient, Client
from dagq.client import RetryPolicy
from dagq.errors import Conflict, InvalidRequest, NotFound
from tests.harness.drive import drive
from tests.harness.live_api import LiveApi

FAST = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.05)
ON_SIGNUP = {"name": "welcome", "triggers": [
    {"event": "user.signup", "if": {"path": "payload.plan", "in": ["pro"]}}],
    "nodes": {"greet": {"executor": "builtin.echo"}}}


def test_sync_emit(api: LiveApi) -> None:
    with Client(api.url, api.admin, retry_policy=FAST) as admin:
        admin.register_workflow(ON_SIGNUP)
    with Client(api.url, api.acme, retry_policy=FAST) as client:
        event = client.emit("user.signup", {"plan": "pro", "user": "u1"})
        assert event.created and [r.workflow for r in event.runs] == ["welcome"]
        uuid.UUID(event.event_id)  # the client made one up: a resend is the same event
        again = client.emit("user.signup", {"plan": "pro", "user": "u1"},
                            event_id=event.event_id)
        assert not again.created and again.runs[0].run_id == event.runs[0].run_id
        assert client.emit("user.signup", {"plan": "free"}).runs == []
        drive(api.repo)
        assert client.run(event.runs[0].run_id).status == "succeeded"
        assert client.event(event.id).runs[0].status == "succeeded"
        with pytest.raises(Conflict):
            client.emit("user.signup", {"plan": "pro"}, event_id=event.event_id)
        with pytest.raises(InvalidRequest):
            client.emit("not a name")
    with Client(api.url, api.globex, retry_policy=FAST) as other, pytest.raises(NotFound):
        other.event(event.id)


def test_async_emit(api: LiveApi) -> None:
    async def go() -> None:
        async with AsyncClient(api.url, api.admin, retry_policy=FAST) as admin:
            await admin.register_workflow(ON_SIGNUP)
        async with AsyncClient(api.url, api.acme, retry_policy=FAST) as client:
            event = await client.emit("user.signup", {"plan": "pro"}, event_id="s-1",
                                      metadata={"source": "test"})
            assert event.created and event.event_id == "s-1" and len(event.runs) == 1
            assert (await client.event("s-1")).id == event.id
            run = await client.run(event.runs[0].run_id)
            assert run.metadata == {"source": "test"}

    asyncio.run(go())
