"""A worker's log lines name the run and the node they are about, never Dramatiq's
internal message ids, and a failed attempt is told once, by its outcome.

- Every line written on a thread while it runs a node (the executor's own lines,
  Dramatiq's, a middleware's) carries that node's run id, node key and attempt:
  dagq.runtime.logs reads them from `current_node` when it writes the line (a JSON field
  each, or `[run=… node=… attempt=…]` after a text line). Nothing is done per node.
- Dramatiq's worker logs every exception an actor raises as an ERROR with a traceback
  ("Failed to process message ... with unhandled exception"), before anyone knows
  whether the attempt will be retried. On a dagq broker that line is dropped, and the
  consumer tells the outcome once it is recorded (`attempt_failed`): a retry is one
  WARNING line (node, attempt, error type and message; the traceback is in the node's
  stored error), a failure for good an ERROR, with the traceback when the error was
  not one the executor meant (FatalError, an actor's `throws`).
"""

from __future__ import annotations

import logging
from typing import Any

from dramatiq.errors import Retry

from dagq.models import LeasedNode
from dagq.runtime.logs import add_scope
from dagq.workers.context import _node
from dagq.workers.errors import FatalError, NodeCancelled, WorkerShutdown
from dagq.workers.messages import LeasedMessage
from dagq.workers.middleware import quiet_discarded_result_warnings

log = logging.getLogger("dagq.worker")

WORKER_THREAD_LOGGER = "dramatiq.worker.WorkerThread"
# Dramatiq 2's line for an exception an actor raised (dramatiq/worker.py, process_message).
UNHANDLED = "Failed to process message %s with unhandled exception."


class _DramatiqLines(logging.Filter):
    """On Dramatiq's WorkerThread logger: drop its line for a leased attempt's exception
    (the consumer tells the outcome), and name the node where a line names a message."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or not args or not isinstance(args[0], LeasedMessage):
            return True
        if record.msg == UNHANDLED:
            return False
        node = _node.get()
        if node is not None:
            record.args = (f"node {node.node_key!r} of run {node.run_id} (attempt "
                           f"{node.attempt})", *args[1:])
        return True


def install() -> None:
    """Once per process (PostgresBroker does it): the node scope and Dramatiq's filters
    (this one, and the one for a return value it would call discarded)."""
    quiet_discarded_result_warnings()
    add_scope(_node.get)
    target = logging.getLogger(WORKER_THREAD_LOGGER)
    if not any(isinstance(f, _DramatiqLines) for f in target.filters):
        target.addFilter(_DramatiqLines())


def node_fields(node: LeasedNode) -> dict[str, Any]:
    """The ids of a line about `node` written where it is not the current node."""
    return {"run_id": str(node.run_id), "node_key": node.node_key, "attempt": node.attempts}


def attempt_failed(node: LeasedNode, outcome: str, error: dict[str, Any],
                   exc: BaseException, *, expected: bool) -> None:
    """Tell how a failed attempt was recorded (`outcome` of Leases.fail): 'retry',
    'failed', 'cancelled' ('stale' is told by the consumer). `expected`: the executor
    meant it (an actor's `throws`): no traceback even for a failure for good."""
    where = (f"node {node.node_key!r} of run {node.run_id}: attempt {node.attempts} of "
             f"{node.max_attempts}")
    what = f"{error.get('type')}: {error.get('message')}"
    extra = node_fields(node)
    if outcome == "retry":
        if isinstance(exc, WorkerShutdown):
            log.info("%s stopped by the worker's shutdown; it will run again", where,
                     extra=extra)
        elif isinstance(exc, Retry):  # asked for by the actor: Dramatiq says nothing
            log.info("%s asked to be retried: %s", where, what, extra=extra)
        else:
            log.warning("%s failed, will retry: %s", where, what, extra=extra)
    elif outcome == "failed":
        quiet = expected or isinstance(exc, FatalError | NodeCancelled | WorkerShutdown) \
            or "traceback" not in error
        log.error("%s failed for good: %s", where, what, extra=extra,
                  exc_info=None if quiet else (type(exc), exc, exc.__traceback__))
    elif outcome == "cancelled":
        log.info("%s stopped: its run was cancelled or has already failed", where,
                 extra=extra)
