"""The Dramatiq + Redis side of the bench's `dramatiq` phase: the same no-op actor on
Dramatiq's RedisBroker, served by the `dramatiq` CLI (DAGQ_BENCH_REDIS_URL names the
bench's private redis-server)."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

dramatiq.set_broker(RedisBroker(url=os.environ["DAGQ_BENCH_REDIS_URL"]))


@dramatiq.actor(actor_name="bench_drain", max_retries=0)
def bench_drain() -> None:
    """A plain actor that does nothing: the drain measures the queue."""
