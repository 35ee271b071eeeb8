"""The hooks every dagq broker runs around Dramatiq's middleware (before all of them,
and after all of them: see PostgresBroker.emit_before/emit_after): mark the lease
executing, give the executor its node context, write its streamed chunks when it
returns, keep the result (or the exception) on the message for the consumer's ack/nack.

Dramatiq acks a message whose actor raised unless some middleware fails it. A dagq
executor's message is failed on any exception, and the fail transaction decides retry
or failure (`max_attempts`, FatalError). A plain actor's was decided by DagqRetries
(workers/retries.py) before this runs: a message to retry is acked, as under Dramatiq,
and the consumer records the retry.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from dramatiq.middleware import Middleware

from dagq.workers import context
from dagq.workers.context import NodeContext
from dagq.workers.leases import LeaseBook, LeaseKey
from dagq.workers.streams import StreamWriter
from dagq.workers.usage import UsageMeter

if TYPE_CHECKING:
    from dramatiq.broker import Broker

    from dagq.workers.messages import LeasedMessage


def message_key(message: LeasedMessage) -> LeaseKey:
    """The lease a message runs: one attempt of one node, (node id, version)."""
    return message.lease_key


class DagqMiddleware(Middleware):
    def __init__(self, book: LeaseBook, streams: StreamWriter | None = None) -> None:
        self.book = book
        self.streams = streams

    def before_process_message(self, broker: Broker, message: LeasedMessage) -> None:
        key = message_key(message)
        lease = self.book.get(key)
        if lease is None:
            return
        node = lease.node
        lease.meter = UsageMeter(node)
        context._set(NodeContext(node.id, node.run_id, node.node_key, node.attempts,
                                 node.max_attempts, node.version, self.streams, lease.meter))
        due = self.book.begin(key, node.timeout_s)
        if due is not None:  # cancelled (or shut down, or superseded) before it started
            message.fail()
            message.stuff_exception(due())

    def after_process_message(
        self, broker: Broker, message: LeasedMessage, *, result: Any = None,
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
            if message.error is None:
                message.error = exception
            if message.retry is None:  # not decided by DagqRetries: the fail tx decides
                message.fail()
            message.stuff_exception(exception)
            return
        lease = self.book.get(key)
        if lease is not None and result is not None:  # a plain actor's return value (an
            lease.result = result  # executor's outputs are on the lease already)

    def after_skip_message(self, broker: Broker, message: LeasedMessage) -> None:
        """A middleware raised SkipMessage (AgeLimit: the message is older than its
        `max_age`): the attempt ends. Failed, it fails for good; else it succeeds with
        no result, as Dramatiq acks a skipped message."""
        key = message_key(message)
        self.book.end(key)
        context._set(None)
        if self.streams is not None:
            self.streams.finish(key)
        message.skipped = True


class _KeptResult(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "has been discarded" not in record.getMessage()


def quiet_discarded_result_warnings() -> None:
    """Dramatiq warns that an actor's return value "has been discarded" unless Results
    stores it or a pipeline takes it; on dagq it is the node's outputs (kept), so the
    warning would be wrong: it is filtered out (Dramatiq's worker and Results loggers)."""
    for name in ("dramatiq.worker.WorkerThread", "dramatiq.results.middleware.Results"):
        target = logging.getLogger(name)
        if not any(isinstance(f, _KeptResult) for f in target.filters):
            target.addFilter(_KeptResult())
