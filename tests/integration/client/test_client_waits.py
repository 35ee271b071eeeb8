"""Client.waits / Client.respond and their AsyncClient twins against the real API
(uvicorn, real Postgres; docs/forms.md): open waits with their forms and links, an answer
through a link with no key, and the API's 422 and 410 as the client's exceptions."""

from __future__ import annotations

import asyncio

import pytest

from dagq import AsyncClient, Client, Workflow
from dagq.client import RetryPolicy
from dagq.errors import Gone, InvalidRequest
from tests.harness.drive import drive
from tests.harness.live_api import LiveApi

FAST = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.05)
ask = Workflow("ask")
ask.wait("ask", signal="answer", assignees=["ann"],
         form={"properties": {"ok": {"type": "boolean"}}, "required": ["ok"]})


def test_sync_waits_and_respond(api: LiveApi) -> None:
    with Client(api.url, api.acme, retry_policy=FAST) as client:
        run_id = client.submit(ask).run_id
        [wait] = client.waits(run_id)
        assert wait["form"]["required"] == ["ok"] and wait["assignees"] == ["ann"]
        assert [w["run_id"] for w in client.waits(assignee="ann", links=False)] == [
            str(run_id)]
        token = wait["respond"]["token"]
    with Client(api.url, api_key="", retry_policy=FAST) as person:  # no key
        with pytest.raises(InvalidRequest) as bad:
            person.respond(token, {"ok": "yes"})
        assert bad.value.details["field"] == "ok"
        assert person.respond(token, {"ok": True})["node_key"] == "ask"
        with pytest.raises(Gone) as used:
            person.respond(token, {"ok": True})
        assert used.value.code == "link_used" and used.value.status == 410
    drive(api.repo)
    with Client(api.url, api.acme) as client:
        assert client.run(run_id).status == "succeeded"


def test_async_waits_and_respond(api: LiveApi) -> None:
    async def main() -> None:
        async with AsyncClient(api.url, api.acme, retry_policy=FAST) as client:
            run_id = (await client.submit(ask)).run_id
            [wait] = await client.waits(run_id)
            answered = await client.respond(wait["respond"]["token"], {"ok": False})
            assert answered["run_id"] == str(run_id)

    asyncio.run(main())
