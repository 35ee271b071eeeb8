"""Executors used by the end-to-end tests (loaded via DAGQ_ACTOR_MODULES)."""

from __future__ import annotations

import logging
import math
import os

import dramatiq

from dagq.workers import FatalError, executor


@executor("test.ident")
def ident(payload):
    return {"i": payload["params"].get("i"), "item": payload.get("item")}


@executor("test.logs")
def logs(payload):
    """Writes one WARNING line of its own (the worker's log lines name the node)."""
    logging.getLogger("tests.executor").warning("said by %s", payload["params"].get("who"))
    return {}


@executor("test.collect")
def collect(payload):
    deps = payload["deps"]
    return {"n": len(deps), "keys": sorted(deps)}


@executor("test.not_json")
def not_json(payload):
    return {"value": math.nan}


@executor("test.fatal")
def fatal(payload):
    raise FatalError("this input can never work")


@dramatiq.actor(max_retries=1)
def add(x, y):
    return x + y


@executor("test.capped", concurrency=3)
def capped(payload):
    import time

    time.sleep(0.05)
    return {}


@executor("test.rated", rate_per_s=20)
def rated(payload):
    return {}


@executor("test.route")
def route(payload):
    return {"route": payload["params"]["route"]}


@executor("test.items")
def items(payload):
    return {"items": [out["item"] for out in payload["deps"]["each"]]}


@executor("test.stream_crash", max_attempts=3)
def stream_crash(payload):
    """Attempt 1 streams 20 chunks and SIGKILLs its worker; later attempts stream 30."""
    import os
    import signal
    import time

    from dagq import current_node

    node = current_node()
    for i in range(20 if node.attempt == 1 else 30):
        node.stream(f"a{node.attempt}.{i} ")
        time.sleep(0.01)
    if node.attempt == 1:
        time.sleep(0.3)  # its chunks are written (the writer flushes every ~15 ms)
        os.kill(os.getpid(), signal.SIGKILL)
    return {"attempt": node.attempt}


@executor("test.stream_thread")
def stream_thread(payload):
    """Chunks from a thread the executor starts, given the node context."""
    import threading

    from dagq import current_node

    node = current_node()
    worker = threading.Thread(target=lambda: [node.stream(f"t{i} ") for i in range(10)])
    worker.start()
    worker.join()
    node.stream(data={"done": 10})
    return {"ok": True}


@executor("test.stream_slowly", max_attempts=2)
def stream_slowly(payload):
    """Stream a chunk every 50 ms for `params.seconds` (a pause test freezes it)."""
    import time

    from dagq import current_node

    node = current_node()
    deadline = time.monotonic() + float(payload["params"].get("seconds", 5))
    i = 0
    while time.monotonic() < deadline:
        node.stream(f"s{node.attempt}.{i} ")
        i += 1
        time.sleep(0.05)
    return {"chunks": i}


@executor("test.stream_then_fail", max_attempts=3)
def stream_then_fail(payload):
    """Attempts before the last stream `params.chunks` chunks of `params.size` bytes and
    fail; the last streams until a cap refuses it (at most 2,000 chunks) and returns why."""
    import time

    from dagq import current_node
    from dagq.workers.streams import StreamTooLarge

    node, params = current_node(), payload["params"]
    piece = "x" * int(params["size"])
    if node.attempt < node.max_attempts:
        for _ in range(int(params["chunks"])):
            node.stream(piece)
        raise RuntimeError(f"attempt {node.attempt} fails after streaming")
    for i in range(2000):
        try:
            node.stream(piece)
        except StreamTooLarge as exc:
            return {"refused": str(exc), "streamed": i}
        time.sleep(0.002)  # the writer flushes every ~15 ms: a refusal shows at once
    return {"refused": None, "streamed": 2000}


@executor("test.fail_item")
def fail_item(payload):
    """Fails for good on the item `params.bad` while the file `params.broken` exists: a
    fault outside the run, which someone fixes before resuming it. It fails after
    `params.fail_after_s`, so the other items end first."""
    import time

    params = payload["params"]
    if payload.get("item") == params.get("bad") and os.path.exists(params["broken"]):
        time.sleep(params.get("fail_after_s", 0))
        raise FatalError(f"item {payload['item']} hit a broken dependency")
    return {"item": payload.get("item"), "pid": os.getpid()}
