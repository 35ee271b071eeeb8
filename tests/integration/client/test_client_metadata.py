"""Run metadata, search and bulk actions from dagq.Client and dagq.AsyncClient against the
real API (issue 34, item 2)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from dagq import AsyncClient, Client
from dagq.errors import InvalidRequest
from tests.harness.live_api import LiveApi

FLOW = {"name": "f", "nodes": {"a": {"executor": "builtin.noop"}}}


def test_submit_find_and_act(api: LiveApi, sql) -> None:
    with Client(api.url, api.acme) as client:
        tagged = [client.submit(FLOW, metadata={"conversation_id": "c-42", "n": i}).run_id
                  for i in range(3)]
        client.submit(FLOW, metadata={"conversation_id": "c-43"})
        assert client.run(tagged[0]).metadata == {"conversation_id": "c-42", "n": 0}
        page = client.list_runs(metadata={"conversation_id": "c-42"}, limit=2)
        assert [r.run_id for r in page.runs] == tagged[:0:-1] and page.next_cursor
        assert [r.run_id for r in client.runs(metadata={"conversation_id": "c-42"},
                                              page_size=1)] == tagged[::-1]
        # a number matches the number, as does its text
        assert [r.run_id for r in client.runs(metadata={"n": 1})] == [tagged[1]]
        assert [r.run_id for r in client.runs(metadata={"n": "1"})] == [tagged[1]]
        later = datetime.now(UTC) + timedelta(hours=1)
        assert client.list_runs(created_after=later).runs == []
        assert len(client.list_runs(created_before=later.replace(tzinfo=None)).runs) == 4
        with pytest.raises(InvalidRequest, match="created_after"):
            client.list_runs(created_after="yesterday")

        first = client.bulk("cancel", metadata={"conversation_id": "c-42"}, limit=2)
        assert (first.acted, first.skipped) == (2, 0) and first.next_cursor is not None
        rest = client.bulk("cancel", metadata={"conversation_id": "c-42"}, limit=2,
                           cursor=first.next_cursor)
        assert (rest.acted, rest.next_cursor) == (1, None)
        again = client.bulk("cancel", ids=tagged)
        assert again.skipped_by == {"already_cancelled": 3}
        assert client.bulk("retry", ids=tagged, limit=10).acted == 3
    with Client(api.url, api.globex) as other:  # another tenant: sees and touches none
        assert other.list_runs(metadata={"conversation_id": "c-42"}).runs == []
        assert other.bulk("cancel", ids=tagged).skipped_by == {"not_found": 3}


def test_the_async_client(api: LiveApi) -> None:
    async def scenario() -> None:
        async with AsyncClient(api.url, api.acme) as client:
            run_id = (await client.submit(FLOW, metadata={"k": True})).run_id
            page = await client.list_runs(metadata={"k": True})
            assert [r.run_id for r in page.runs] == [run_id]
            assert [r.run_id async for r in client.runs(metadata={"k": "true"})] == [run_id]
            outcome = await client.bulk("cancel", metadata={"k": True})
            assert (outcome.acted, outcome.next_cursor) == (1, None)
            rerun = await client.bulk("rerun", ids=[run_id], from_=["a"])
            assert rerun.acted == 1

    asyncio.run(scenario())
