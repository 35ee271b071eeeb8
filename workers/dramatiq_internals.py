"""The three places dagq reaches past Dramatiq's public API, kept in one module.

Shutdown needs what Dramatiq does not expose: the worker's queue of messages waiting for
a thread (to hand their leases back at once rather than let them expire), and each
consumer thread's consumer (to requeue through it); a nack needs the exception a
middleware stuffed into the message. tests/unit/test_dramatiq_internals.py checks these
attributes against the installed Dramatiq, so an upgrade that moves them fails a test
rather than a shutdown.
"""

from __future__ import annotations

import queue
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dramatiq import Worker
    from dramatiq.broker import Consumer, MessageProxy


def take_waiting_messages(worker: Worker) -> dict[str, list[MessageProxy]]:
    """Every message on the worker's work queue (prefetched, not started), by queue
    name, taken off it."""
    by_queue: dict[str, list[MessageProxy]] = {}
    while True:
        try:
            item = worker.work_queue.get_nowait()
        except queue.Empty:
            return by_queue
        by_queue.setdefault(item.message.queue_name, []).append(item.message)
        worker.work_queue.task_done()


def consumer_of(worker: Worker, queue_name: str) -> Consumer | None:
    """The consumer the worker's thread for `queue_name` iterates, once it started."""
    thread = worker.consumers.get(queue_name)
    return None if thread is None else thread.consumer


def stuffed_exception(message: MessageProxy) -> BaseException | None:
    """The exception a middleware (or the worker) recorded with `stuff_exception`."""
    return message._exception
