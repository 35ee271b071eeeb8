"""The API's LISTEN task stops whenever the lifespan ends, wherever it is."""

from __future__ import annotations

import asyncio
import random
import uuid

from dagq.api.hub import EventHub
from dagq.runtime.db import conninfo


def test_stop_never_hangs_at_any_point_of_connecting_or_listening(db_url: str) -> None:
    # Stopped at random points of connect / LISTEN / notifies(). Before the fix, a cancel
    # landing while LISTEN was in flight left psycopg 3.2.4 waiting forever (89 of 1,500
    # stops hung); the API's shutdown hung with it.
    async def stop_many(times: int) -> list[int]:
        hung = []
        rng = random.Random(30)
        for i in range(times):
            hub = EventHub(conninfo(db_url))
            await hub.start()
            await asyncio.sleep(rng.random() * 0.02)
            try:
                await asyncio.wait_for(asyncio.shield(hub.stop()), 5)
            except TimeoutError:
                hung.append(i)
                if len(hung) > 2:
                    break
        return hung

    assert asyncio.run(stop_many(300)) == []


def test_a_stopped_hub_wakes_its_subscribers(db_url: str) -> None:
    async def scenario() -> bool:
        hub = EventHub(conninfo(db_url))
        await hub.start()
        await asyncio.wait_for(hub.listening.wait(), 10)
        with hub.subscribe(uuid.uuid4()) as wake:
            await hub.stop()
            return wake.is_set()

    assert asyncio.run(scenario())
