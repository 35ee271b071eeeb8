"""Client.signal and AsyncClient.signal against the real API (uvicorn, real Postgres):
delivered, buffered, made idempotent by the client, and the API's errors as the
client's exceptions."""

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
HOLD = {"name": "hold", "nodes": {
    "first": {"executor": "builtin.noop"},
    "hold": {"wait": {"signal": "go"}, "depends_on": ["first"]}}}


def test_sync_signal(api: LiveApi, sql) -> None:
    with Client(api.url, api.acme, retry_policy=FAST) as client:
        run_id = client.submit(HOLD).run_id
        early = client.signal(run_id, "go", {"n": 1})
        assert not early.delivered and not early.duplicate
        uuid.UUID(early.signal_id)  # the client made one up
        assert client.signal(run_id, "go", signal_id=early.signal_id).duplicate
        drive(api.repo)
        run = client.run(run_id)
        assert run.status == "succeeded"
        assert run.nodes[1].outputs == {"signal": "go", "signal_id": early.signal_id,
                                        "data": {"n": 1}}
        with pytest.raises(Conflict):
            client.signal(run_id, "go")
        with pytest.raises(NotFound):
            client.signal(uuid.uuid4(), "go")
        with pytest.raises(InvalidRequest):
            client.signal(run_id, "not a name")
    rows = sql.execute("SELECT count(*) AS n FROM dagq.signals").fetchone()["n"]
    assert rows == 1


def test_async_signal(api: LiveApi) -> None:
    async def scenario() -> None:
        async with AsyncClient(api.url, api.acme, retry_policy=FAST) as client:
            run_id = (await client.submit(HOLD)).run_id
            drive(api.repo)
            sent = await client.signal(run_id, "go", {"ok": True}, signal_id="a-1")
            assert (sent.delivered, sent.node_key) == (True, "hold")
            assert (await client.run(run_id)).status == "succeeded"

    asyncio.run(scenario())
