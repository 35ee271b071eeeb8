"""The Dramatiq internals dagq relies on (workers/dramatiq_internals.py) are still where
it expects them in the installed Dramatiq: a real StubBroker worker, no mocks."""

from __future__ import annotations

import time
from collections.abc import Iterator

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.worker import _WorkQueueItem

from dagq.workers.dramatiq_internals import (
    consumer_of,
    stuffed_exception,
    take_waiting_messages,
)


@pytest.fixture
def stub() -> Iterator[StubBroker]:
    broker = StubBroker()
    broker.emit_after("process_boot")
    yield broker
    broker.close()


def test_waiting_messages_come_off_the_work_queue_by_queue(stub: StubBroker) -> None:
    worker = dramatiq.Worker(stub, worker_threads=1)
    first = dramatiq.Message(queue_name="a", actor_name="x", args=(), kwargs={}, options={})
    second = dramatiq.Message(queue_name="b", actor_name="x", args=(), kwargs={}, options={})
    for message in (first, second):
        worker.work_queue.put(_WorkQueueItem(0, dramatiq.broker.MessageProxy(message)))
    taken = take_waiting_messages(worker)
    assert {q: [m.message_id for m in ms] for q, ms in taken.items()} == {
        "a": [first.message_id], "b": [second.message_id]}
    assert worker.work_queue.empty() and worker.work_queue.unfinished_tasks == 0


def test_a_started_worker_exposes_each_queue_consumer(stub: StubBroker) -> None:
    stub.declare_queue("q")
    worker = dramatiq.Worker(stub, worker_threads=1, worker_timeout=50)
    assert consumer_of(worker, "q") is None  # not started
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while consumer_of(worker, "q") is None and time.monotonic() < deadline:
            time.sleep(0.01)
        consumer = consumer_of(worker, "q")
        assert consumer is not None and hasattr(consumer, "requeue")
    finally:
        worker.stop()


def test_a_stuffed_exception_is_readable() -> None:
    proxy = dramatiq.broker.MessageProxy(dramatiq.Message(
        queue_name="q", actor_name="x", args=(), kwargs={}, options={}))
    assert stuffed_exception(proxy) is None
    error = ValueError("boom")
    proxy.stuff_exception(error)
    assert stuffed_exception(proxy) is error
