"""The one Dramatiq middleware dagq needs: mark the lease executing, give the executor
its node context, write its streamed chunks when it returns, keep the result.

Dramatiq acks a message whose actor raised unless some middleware fails it; dagq has
no Retries middleware (Postgres' `attempts` is the only retry counter), so this one
fails the message on any exception, and the broker's nack decides retry or failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dramatiq.middleware import Middleware

from dagq.workers import context
from dagq.workers.context import NodeContext
from dagq.workers.leases import LeaseBook, LeaseKey
from dagq.workers.streams import StreamWriter

if TYPE_CHECKING:
    from dramatiq.broker import Broker, MessageProxy


def message_key(message: MessageProxy) -> LeaseKey:
    """The lease a message runs: one attempt of one node, (node id, version)."""
    return message.options["dagq_node_id"], message.options["dagq_version"]


class DagqMiddleware(Middleware):
    # Options Dramatiq actors commonly pass; accepted so plain actor code keeps working.
    actor_options = {"max_retries", "time_limit", "min_backoff", "max_backoff",
                     "retry_when", "throws", "max_age"}

    def __init__(self, book: LeaseBook, streams: StreamWriter | None = None) -> None:
        self.book = book
        self.streams = streams

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        key = message_key(message)
        lease = self.book.get(key)
        if lease is None:
            return
        node = lease.node
        context._set(NodeContext(node.id, node.run_id, node.node_key, node.attempts,
                                 node.max_attempts, node.version, self.streams))
        due = self.book.begin(key, node.timeout_s)
        if due is not None:  # cancelled (or shut down, or superseded) before it started
            message.fail()
            message.stuff_exception(due())

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        key = message_key(message)
        interrupted = self.book.end(key)
        context._set(None)
        if self.streams is not None:  # its chunks are written before its outcome
            self.streams.finish(key)
        if exception is None and interrupted is not None:
            exception = interrupted()
        if exception is not None:
            message.fail()
            message.stuff_exception(exception)
            return
        lease = self.book.get(key)
        if lease is not None:
            lease.result = result
