"""The consumer of one queue: Dramatiq's iterator over leased nodes, and the outcomes
(ack: outputs to the committer; nack: the failure; requeue: leases handed back).

Threads: Dramatiq's consumer thread for the queue iterates it (`__next__`, `buffer`),
worker threads call `ack`/`nack` (through Dramatiq), the completion batcher's thread
puts hand-off leases into `buffer` (`accept`), and shutdown calls `requeue`/`close`;
`_closing` orders `accept` against `close` so no lease is stranded in the buffer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from dramatiq.broker import Consumer
from dramatiq.message import Message

from dagq.errors import DagqError
from dagq.models import LeasedNode
from dagq.store import Completion
from dagq.workers.dramatiq_internals import stuffed_exception
from dagq.workers.errors import AgeLimitExceeded, FatalError, NodeCancelled, WorkerShutdown
from dagq.workers.leases import LeaseBook, LeaseKey
from dagq.workers.log_lines import attempt_failed, node_fields
from dagq.workers.messages import LeasedMessage, option, rebuild
from dagq.workers.middleware import message_key
from dagq.workers.outcomes import check_outputs, describe_error

if TYPE_CHECKING:
    from dagq.workers.broker import PostgresBroker

log = logging.getLogger("dagq.broker")

# A consumer waits at most this long for a notification before it polls.
POLL_S = 1.0


class PostgresConsumer(Consumer):
    def __init__(self, broker: PostgresBroker, book: LeaseBook, queue: str, prefetch: int,
                 timeout_ms: int):
        self.broker = broker
        self.book = book
        self.queue = queue
        self.prefetch = max(1, prefetch)
        # Lease in batches: refill only once half the prefetch is free (the other half
        # keeps the threads busy meanwhile), not every time one slot frees up.
        self.refill = max(1, self.prefetch // 2)
        self.timeout_s = min(timeout_ms / 1000, POLL_S)
        self.buffer: deque[LeasedMessage] = deque()
        self._closing = threading.Lock()  # accept() vs close(): no lease is stranded
        self.closed = False
        self.drained = False  # the last lease got fewer nodes than it had room for

    def __iter__(self) -> PostgresConsumer:
        return self

    def __next__(self) -> LeasedMessage | None:
        broker, book = self.broker, self.book
        if broker.stopping:
            self._hand_back_buffer()  # never-started leases go back at once
            time.sleep(0.1)  # the consumer thread calls again at once
            return None
        if self.buffer:
            return self.buffer.popleft()
        if not book.wait_for_room(self.queue, self.prefetch, self.refill, self.timeout_s,
                                  ready=self.buffer.__len__):
            return None
        wake = broker.listener.event(self.queue) if broker.listener else None
        if self.drained and wake is not None:
            # The last lease found the queue empty: lease again once something was
            # queued since (or a hand-off arrived), or at the polling interval.
            wake.wait(self.timeout_s)
        if self.buffer:  # handed off by a completion while we waited
            return self.buffer.popleft()
        if wake is not None:
            wake.clear()  # before leasing: a notification during the lease is kept
        if broker.stopping:  # the stop began while we waited: lease nothing more
            return None
        room = book.room(self.queue, self.prefetch)
        nodes = broker.repo.leases.lease(
            worker=broker.worker_id, queue=self.queue, limit=room,
            ttl_s=broker.lease_ttl_s, executors=broker.served, capped=broker.capped_list,
        ) if room > 0 else []
        self.drained = len(nodes) < room
        if not nodes:
            return None
        for node in nodes:
            book.add(node, self.queue)
            self.buffer.append(self._message(node))
        if broker.stopping:
            # The stop began during the lease (a stopping worker's hand-back notifies
            # the queue, which wakes us): give these back unstarted, never run them.
            self._hand_back_buffer()
            return None
        return self.buffer.popleft()

    def accept(self, node: LeasedNode) -> bool:
        """Take a node leased for this worker elsewhere (a completion's hand-off)."""
        with self._closing:
            if self.closed or self.broker.stopping:
                return False
            self.book.add(node, self.queue)
            self.buffer.append(self._message(node))
        self.book.poke()
        if self.broker.listener:
            self.broker.listener.event(self.queue).set()
        return True

    def _message(self, node: LeasedNode) -> LeasedMessage:
        """A plain actor's node: the message it was sent as. A dagq executor's: a message
        whose arguments are the lease's key (the actor reads its payload from the book)."""
        key = (node.id, node.version)
        if node.executor in self.broker.executors:
            message = Message(queue_name=self.queue, actor_name=node.executor, args=key,
                              kwargs={}, options={}, message_id=f"{node.id}.{node.version}")
            return LeasedMessage(message, key, node.timeout_s, plain=False)
        return LeasedMessage(rebuild(node, self.queue), key, node.timeout_s, plain=True)

    # -- outcomes (called from worker threads) ----------------------------------------
    # Each attempt is its lease's (node id, version) key: a late outcome of an attempt
    # that was taken back touches only that attempt, never a newer lease of the node.
    # Nothing raised here may escape to Dramatiq: whatever fails after the executor
    # returned ends the attempt (failed, with the error) and releases its lease.

    def ack(self, message: LeasedMessage) -> None:
        """Hand the outputs to the group committer; the lease is released once they are
        committed (see workers/completions.py). A plain actor's message that raised and
        is to be retried is acked too (as under Dramatiq): its retry is recorded."""
        key = message_key(message)
        lease = self.book.get(key)
        if lease is None or lease.lost:
            self._discarded(key, lease, "finished")
            return
        if message.error is not None:
            self._end_failed(message, key, message.error)
            message.error = None  # see nack
            return
        try:
            outputs = check_outputs(
                lease.result, plain=lease.node.executor not in self.broker.executors,
                max_bytes=self.broker.max_output_bytes)
            completion = Completion(key[0], key[1], outputs, self._wake(lease),
                                    run_id=lease.node.run_id, usage=lease.usage())
            self.book.finishing(key)
            self.broker.completions.submit(completion,
                                           lambda ok: self._completed(key, ok))
        except Exception as exc:  # noqa: BLE001 - see above
            lease.result = None
            self._end_failed(message, key, exc)

    def _discarded(self, key: LeaseKey, lease: Any, how: str) -> None:
        """An attempt ended after its lease was lost (reclaimed, the run stopped). Its
        usage is still recorded (fenced): the provider billed it."""
        if lease is not None and (usage := lease.usage()):
            try:
                self.broker.repo.usage.record_usage(usage)
            except Exception:  # noqa: BLE001 - never escape to Dramatiq (see above)
                log.exception("could not record the usage of node %s's discarded attempt",
                              key[0])
        if lease is None:
            log.info("node %s %s after its lease was lost; outcome discarded", key[0], how)
        else:
            node = lease.node
            log.info("node %r of run %s: attempt %d %s after its lease was lost; outcome "
                     "discarded", node.node_key, node.run_id, node.attempts, how,
                     extra=node_fields(node))
        self.book.remove(key)

    def _completed(self, key: LeaseKey, recorded: bool | None) -> None:
        if recorded is False:
            log.info("stale completion of node %s ignored (lease reclaimed)", key[0])
        self.book.remove(key)

    def nack(self, message: LeasedMessage) -> None:
        key = message_key(message)
        lease = self.book.get(key)
        if lease is None or lease.lost:
            self._discarded(key, lease, "failed")
            return
        if message.skipped:  # AgeLimit (max_age): never retried
            message.retry = False
            exc: BaseException = AgeLimitExceeded(
                f"message {message.message_id} is older than its max_age; skipped")
        else:
            exc = (message.error or stuffed_exception(message)
                   or RuntimeError("the node failed without an exception"))
        self._end_failed(message, key, exc)
        # The exception's traceback holds the worker's frame, whose locals hold this
        # message: keeping the exception would make a reference cycle (Dramatiq clears
        # its own reference for the same reason).
        message.error = None

    def _end_failed(self, message: LeasedMessage, key: LeaseKey, exc: BaseException) -> None:
        """A dagq executor's attempt is retried unless FatalError; a plain actor's as
        DagqRetries decided, and never when failed otherwise (a middleware failed it:
        Dramatiq dead-letters a nacked message), but for a worker shutdown."""
        if message.retry is not None:
            retryable = message.retry
        elif message.plain:
            retryable = isinstance(exc, WorkerShutdown)
        else:
            retryable = not isinstance(exc, FatalError)
        try:
            self._record_failure(message, exc, retryable=retryable)
        except Exception:  # noqa: BLE001 - the lease expires and the sweeper retries it
            # Dramatiq's line about the executor's exception is not written (log_lines):
            # this one says what it was.
            log.exception("could not record the failure of node %s (%s); its lease will "
                          "expire", key[0], type(exc).__name__)
        finally:
            self.book.remove(key)

    def requeue(self, messages: Any) -> None:
        leases = [message_key(m) for m in messages]
        if not leases:
            return
        try:
            count = self.broker.repo.leases.requeue_unstarted(worker=self.broker.worker_id,
                                                              leases=leases)
            log.info("requeued %d prefetched node(s) on %s", count, self.queue)
        except DagqError:
            log.warning("could not requeue %d node(s); their leases will expire", len(leases))
        finally:
            for key in leases:
                self.book.remove(key)

    def close(self) -> None:
        with self._closing:
            self.closed = True
        self._hand_back_buffer()

    def _hand_back_buffer(self) -> None:
        with self._closing:  # no hand-off lands in the buffer meanwhile
            messages = list(self.buffer)
            self.buffer.clear()
        if messages:
            self.requeue(messages)

    # -- helpers ----------------------------------------------------------------------

    def _wake(self, lease: Any) -> str | None:
        """A capped executor's slot frees up: wake the queue's consumers everywhere."""
        return self.queue if lease.node.executor in self.broker.capped else None

    def _record_failure(self, message: LeasedMessage, exc: BaseException, *,
                        retryable: bool) -> None:
        node_id, version = message_key(message)
        lease = self.book.get((node_id, version))
        error = describe_error(exc, message.timeout_s)
        outcome = self.broker.repo.leases.fail(
            node_id, version, error,
            retryable=retryable and not isinstance(exc, NodeCancelled),
            cancelled=isinstance(exc, NodeCancelled),
            wake_queue=self._wake(lease) if lease else None,
            delay_s=message.retry_delay_s,
            usage=lease.usage() if lease else (),
        )
        if outcome == "stale":
            log.info("stale failure of node %s ignored", node_id)
        elif lease is not None:  # the one line about this attempt (workers/log_lines.py)
            attempt_failed(lease.node, outcome, error, exc, expected=self._thrown(message, exc))

    def _thrown(self, message: LeasedMessage, exc: BaseException) -> bool:
        """A plain actor's exception listed in its `throws` (Dramatiq: an expected one)."""
        if not message.plain:
            return False
        actor = self.broker.actors.get(message.actor_name)
        throws = option(message, actor, "throws")
        return bool(throws) and isinstance(exc, throws)
