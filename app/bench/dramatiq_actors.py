"""The actors of the `dramatiq` phase of `dagq bench`, loaded by its workers through
DAGQ_ACTOR_MODULES (and imported by the bench with its producer broker set)."""

from __future__ import annotations

import dramatiq


@dramatiq.actor(actor_name="bench_drain", max_retries=0)
def bench_drain() -> None:
    """A plain actor that does nothing: the drain measures the queue."""


@dramatiq.actor(actor_name="bench_latency", max_retries=0)
def bench_latency() -> None:
    """The same, under another name: the idle send -> start samples."""
