"""dagq.AsyncClient against the real API: the same core behaviours as the sync client
(submit, read, pages, wait and its timeout, events across cut connections, errors)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from contextlib import aclosing

import pytest

from dagq import AsyncClient
from dagq.client import RetryPolicy
from dagq.errors import Conflict, InvalidWorkflow, NotFound, Unauthorized, Unavailable
from tests.harness.drive import drive
from tests.harness.live_api import CHAIN, CutProxy, LiveApi, step
from tests.harness.procs import wait_for

FAST = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.05)


def test_operations(api: LiveApi) -> None:
    async def scenario() -> None:
        async with AsyncClient(api.url, api.admin, retry_policy=FAST) as client:
            ref, created = await client.register_workflow(CHAIN)
            assert created and (await client.register_workflow(CHAIN)) == (ref, False)
            assert [w.name for w in await client.workflows()] == ["chain"]
            assert (await client.workflow("chain", version=1)).version == 1
            ids = [(await client.submit("chain", {"i": i})).run_id for i in range(5)]
            keyed = await client.submit("chain", {"k": 1}, event_key="k")
            assert not (await client.submit("chain", {"k": 1}, event_key="k")).created
            listed = [r.run_id async for r in client.runs(page_size=2)]
            assert listed == [keyed.run_id, *reversed(ids)]
            run = await client.run(ids[0])
            assert run.status == "queued" and len(run.nodes) == 4
            assert (await client.cancel(ids[0])).status == "cancelled"
            assert (await client.retry(ids[0])).status in ("queued", "running")
            schedule_id = await client.create_schedule("chain", "*/5 * * * *")
            assert (await client.schedule(schedule_id)).cron == "*/5 * * * *"
            assert [s.schedule_id for s in await client.schedules()] == [schedule_id]
            await client.delete_schedule(schedule_id)
            assert (await client.queues())[0].queued >= 1
            drive(api.repo)
            stored = [e async for e in client.events(ids[1], follow=False)]
            followed = [e async for e in client.events(ids[1])]
            assert followed == stored and stored[-1].type == "run_succeeded"
            after = [e.id async for e in client.events(ids[1], after=stored[3].id)]
            assert after == [e.id for e in stored[4:]]

    asyncio.run(scenario())


def test_errors(api: LiveApi) -> None:
    async def scenario() -> None:
        async with AsyncClient(api.url, "wrong") as stranger:
            with pytest.raises(Unauthorized) as denied:
                await stranger.run(uuid.uuid4())
            assert (denied.value.status, denied.value.code) == (401, "unauthorized")
        async with AsyncClient(api.url, api.admin) as client:
            with pytest.raises(NotFound) as missing:
                await client.run(uuid.uuid4())
            assert missing.value.status == 404
            with pytest.raises(NotFound):
                async with aclosing(client.events(uuid.uuid4())) as events:
                    await anext(events)
            await client.submit(CHAIN, {"n": 1}, event_key="k")
            with pytest.raises(Conflict) as conflict:
                await client.submit(CHAIN, {"n": 2}, event_key="k")
            assert conflict.value.code == "conflict"
            with pytest.raises(InvalidWorkflow):
                await client.submit({"name": "empty", "nodes": {}})
        api.repo.db.retry_s = 0.2
        api.repo.db.pool.close()
        async with AsyncClient(api.url, api.admin, retry_policy=FAST) as client:
            with pytest.raises(Unavailable) as down:
                await client.queues()
            assert down.value.status == 503

    asyncio.run(scenario())


def test_events_across_cut_connections(api: LiveApi) -> None:
    proxy = CutProxy(api.port)

    async def scenario() -> tuple[list, list]:
        async with AsyncClient(proxy.url, api.acme, retry_policy=FAST) as client:
            run_id = (await client.submit(CHAIN)).run_id
            seen = []
            async for event in client.events(run_id):
                seen.append(event)
                if event.type == "node_queued":
                    if event.node_key in ("b", "d"):
                        proxy.cut()
                    step(api.repo)
            return seen, [e async for e in client.events(run_id, follow=False)]

    try:
        seen, stored = asyncio.run(scenario())
    finally:
        proxy.close()
    assert [e.id for e in seen] == [e.id for e in stored] and seen[-1].type == "run_succeeded"
    assert proxy.cuts == 2 and len(proxy.last_event_ids()) >= 2


def test_wait_and_its_timeout(api: LiveApi) -> None:
    def worker() -> None:
        wait_for(lambda: api.app.state.hub.subscriber_count() >= 1, 30, "wait() to follow")
        while step(api.repo):
            pass

    async def scenario() -> None:
        async with AsyncClient(api.url, api.acme) as client:
            slow = (await client.submit(CHAIN)).run_id
            started = time.monotonic()
            with pytest.raises(TimeoutError, match=f"run {slow} did not finish within 1s"):
                await client.wait(slow, timeout_s=1)
            assert 1 <= time.monotonic() - started < 30
            await client.cancel(slow)
            run_id = (await client.submit(CHAIN)).run_id
            thread = threading.Thread(target=worker, daemon=True)
            thread.start()
            run = await client.wait(run_id, timeout_s=120)
            await asyncio.to_thread(thread.join, 30)
            assert run.status == "succeeded" and run.nodes_remaining == 0

    asyncio.run(scenario())
