"""The Dramatiq actor a dagq executor is served as: it runs the executor on its leased
node's payload, on a worker thread or, for an `async def` executor, on the worker's
event loop (the AsyncIO middleware's)."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from dramatiq.asyncio import EventLoopThread, get_event_loop_thread
from dramatiq.threading import Interrupt

from dagq.workers.errors import FatalError, NodeCancelled
from dagq.workers.leases import LeaseBook
from dagq.workers.registry import ExecutorDef

log = logging.getLogger("dagq.broker")


def executor_entry(book: LeaseBook, definition: ExecutorDef) -> Any:
    """The actor function: run the executor on the leased node's payload. An `async
    def` executor (or one returning an awaitable) runs on the worker's event loop (the
    AsyncIO middleware's) while this thread waits: the interrupts (timeout, cancel,
    shutdown) raised in this thread cancel its task, as Dramatiq's async actors do."""

    def run_node(node_id: int, version: int) -> None:
        lease = book.get((node_id, version))
        if lease is None or lease.lost:
            raise NodeCancelled("lease no longer held")
        result = definition.fn(lease.node.payload())
        if inspect.isawaitable(result):
            loop = get_event_loop_thread()
            if loop is None:
                if inspect.iscoroutine(result):
                    result.close()
                raise FatalError(f"executor {definition.name!r} is async and this broker has "
                                 "no AsyncIO middleware (its event loop)")
            result = _run_coroutine(loop, result, definition.name)
        # The outputs go to the lease, not back to Dramatiq: a returned value would cost
        # every message Dramatiq's "result has been discarded" warning (built, then
        # filtered out: ~5% of a no-op node's worker time).
        lease.result = result
        return None

    run_node.__name__ = run_node.__qualname__ = definition.name.replace(".", "_")
    run_node.__module__ = getattr(definition.fn, "__module__", __name__)
    return run_node


def _run_coroutine(loop: EventLoopThread, coroutine: Any, name: str) -> Any:
    """Run an executor's coroutine on the event loop. Dramatiq waits 1 s for a cancelled
    coroutine to finish, then raises RuntimeError from the interrupt: the attempt ends
    with the interrupt (a timeout stays a timeout, a cancel a cancel) and the coroutine,
    which nothing can stop, is left to finish on the loop, its result discarded."""
    try:
        return loop.run_coroutine(coroutine)
    except RuntimeError as exc:
        if not isinstance(exc.__cause__, Interrupt):
            raise
        log.warning("executor %r ignored its cancellation (%s) for 1 s; it is left to "
                    "finish on the event loop and its result will be discarded",
                    name, type(exc.__cause__).__name__)
        raise exc.__cause__ from None
