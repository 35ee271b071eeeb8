"""A Dramatiq application that sets its broker itself, as a Redis user's module does
(only the broker line changed): run by `dagq worker` and by the `dramatiq` CLI in the
tests of tests/e2e/test_dramatiq_cli.py."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.results import Results

from dagq import PostgresBroker, PostgresResultBackend

DATABASE_URL = os.environ["DAGQ_DATABASE_URL"]

broker = PostgresBroker(url=DATABASE_URL)
backend = PostgresResultBackend(url=DATABASE_URL)
broker.add_middleware(Results(backend=backend, store_results=True))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="own")
def multiply(x, y):
    return x * y


@dramatiq.actor(queue_name="own", time_limit=60_000)
def slow_multiply(x, y, seconds):
    """Runs longer than the lease TTL: only heartbeats keep its lease."""
    import time

    time.sleep(seconds)
    return x * y
