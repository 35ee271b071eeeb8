"""The one Dramatiq middleware dagq needs: mark the lease executing, keep the result.

Dramatiq acks a message whose actor raised unless some middleware fails it; dagq has
no Retries middleware (Postgres' `attempts` is the only retry counter), so this one
fails the message on any exception, and the broker's nack decides retry or failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dramatiq.middleware import Middleware

from dagq.workers import context
from dagq.workers.context import NodeContext

if TYPE_CHECKING:
    from dramatiq.broker import Broker, MessageProxy

    from dagq.workers.broker import PostgresBroker


class DagqMiddleware(Middleware):
    # Options Dramatiq actors commonly pass; accepted so plain actor code keeps working.
    actor_options = {"max_retries", "time_limit", "min_backoff", "max_backoff",
                     "retry_when", "throws", "max_age"}

    def __init__(self, broker: PostgresBroker) -> None:
        self.dagq = broker

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        node_id = message.options["dagq_node_id"]
        lease = self.dagq.book.get(node_id)
        if lease is None:
            return
        node = lease.node
        context._set(NodeContext(node.id, node.run_id, node.node_key, node.attempts,
                                 node.max_attempts))
        due = self.dagq.book.begin(node_id, node.timeout_s)
        if due is not None:  # cancelled (or shut down) before it started
            message.fail()
            message.stuff_exception(due())

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        node_id = message.options["dagq_node_id"]
        interrupted = self.dagq.book.end(node_id)
        context._set(None)
        if exception is None and interrupted is not None:
            exception = interrupted()
        if exception is not None:
            message.fail()
            message.stuff_exception(exception)
            return
        lease = self.dagq.book.get(node_id)
        if lease is not None:
            lease.result = result
