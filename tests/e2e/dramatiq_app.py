"""A Dramatiq application as a Redis user writes it, for the end-to-end tests of the
Dramatiq broker (issue 19). Loaded by workers through DAGQ_ACTOR_MODULES, and imported
by the tests (after they set a PostgresBroker) to send messages.

Each actor returns what the test checks: the return value is the node's outputs
(`{"result": ...}`) and, with Results, the stored result."""

from __future__ import annotations

import time

import dramatiq
from dramatiq.middleware import CurrentMessage, GroupCallbacks
from dramatiq.results import Results

from dagq import PostgresRateLimiterBackend, PostgresResultBackend

broker = dramatiq.get_broker()
broker.add_middleware(CurrentMessage())
backend = PostgresResultBackend()  # DAGQ_DATABASE_URL
broker.add_middleware(Results(backend=backend, store_results=True))
counters = PostgresRateLimiterBackend()
broker.add_middleware(GroupCallbacks(counters))


def _attempt() -> int:
    message = CurrentMessage.get_current_message()
    assert message is not None
    return int(message.options.get("retries", 0)) + 1


@dramatiq.actor
def whoami(tag):
    message = CurrentMessage.get_current_message()
    return {"tag": tag, "message_id": message.message_id,
            "timestamp": message.message_timestamp, "options": message.options}


@dramatiq.actor(max_retries=3, min_backoff=100, max_backoff=200)
def flaky(times):
    """Fails `times` attempts, then returns the attempt it succeeded on."""
    if _attempt() <= times:
        raise RuntimeError(f"attempt {_attempt()} fails")
    return _attempt()


@dramatiq.actor
def retry_later(delay_ms):
    if _attempt() == 1:
        raise dramatiq.Retry(delay=delay_ms)
    return _attempt()


@dramatiq.actor(throws=(ValueError,))
def throws_value_error():
    raise ValueError("expected: never retried")


@dramatiq.actor(retry_when=lambda retries, exc: retries < 2, min_backoff=10, max_backoff=20)
def retried_twice():
    raise RuntimeError("always")


@dramatiq.actor
def exhausted_callback(message, info):
    return {"message_id": message["message_id"], "info": info}


@dramatiq.actor(max_retries=1, min_backoff=10, max_backoff=20,
                on_retry_exhausted="exhausted_callback")
def exhausts():
    raise RuntimeError("always")


@dramatiq.actor
def on_ok(message, result):
    return {"message_id": message["message_id"], "result": result}


@dramatiq.actor
def on_bad(message, error):
    return {"message_id": message["message_id"], "error": error}


@dramatiq.actor(max_retries=0, on_success="on_ok", on_failure="on_bad")
def maybe(fail):
    if fail:
        raise KeyError("asked to fail")
    return "fine"


@dramatiq.actor(time_limit=500, max_retries=0)
def overruns():
    for _ in range(100):  # short sleeps: an asynchronous exception lands between them
        time.sleep(0.05)
    return "too late"


@dramatiq.actor(max_age=300)
def short_lived():
    return "ran"


@dramatiq.actor(queue_name="prio", priority=10)
def low_priority(i):
    return i


@dramatiq.actor(queue_name="prio", priority=0)
def high_priority(i):
    return i


@dramatiq.actor
def add(x, y=0):
    return x + y


@dramatiq.actor
def default_retries():
    return _attempt()


@dramatiq.actor(notify_shutdown=True, max_retries=0)
def notified():
    return "declared"


def _times_ten(x):
    return x * 10


@dramatiq.actor
def declare_late():
    """Declares `late_actor` on this process's broker, long after the worker started."""
    dramatiq.actor(_times_ten, actor_name="late_actor", broker=dramatiq.get_broker())
    return "declared"


@dramatiq.actor(min_backoff=100, max_backoff=200)
def crash_once(marker, x):
    """SIGKILLs its own worker the first time (creating `marker`), then adds one."""
    import os
    import signal
    from pathlib import Path

    if not Path(marker).exists():
        Path(marker).write_text("killed")
        time.sleep(0.2)  # the previous step's completion is committed by now
        os.kill(os.getpid(), signal.SIGKILL)
    return x + 1


@dramatiq.actor
def group_done(label):
    return label
