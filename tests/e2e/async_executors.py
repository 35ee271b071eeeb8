"""`async def` executors and a plain `async def` Dramatiq actor, for the end-to-end
tests of async support (issue 19 item 6). Loaded by workers through
DAGQ_ACTOR_MODULES; the test imports it (with a PostgresBroker set) to send `double`."""

from __future__ import annotations

import asyncio

import dramatiq

from dagq import current_node, executor


@executor("test.async_ok")
async def async_ok(payload):
    await asyncio.sleep(0.01)
    return {"doubled": payload["params"]["x"] * 2}


@executor("test.async_sleep")
async def async_sleep(payload):
    """Sleeps, and records (in its outputs' place: a streamed chunk) that it was
    cancelled: the task sees CancelledError when its run is cancelled or times out."""
    node = current_node()
    try:
        await asyncio.sleep(payload["params"]["seconds"])
    except asyncio.CancelledError:
        node.stream("cancelled")
        raise
    return {"slept": True}


@executor("test.async_stubborn")
async def async_stubborn(payload):
    """Ignores its cancellation for a while (as a careless client library might)."""
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        await asyncio.sleep(payload["params"]["ignore_s"])
    return {"ignored": True}


@executor("test.async_stream")
async def async_stream(payload):
    node = current_node()
    for i in range(5):
        node.stream(f"a{i} ")
        await asyncio.sleep(0.005)
    node.stream(data={"done": 5})
    return {"chunks": 5}


@dramatiq.actor(max_retries=0)
async def double(x):
    await asyncio.sleep(0.01)
    return x * 2
