"""A Dramatiq broker whose queue is `dagq.node_tasks`: consume is the lease.

- `consume()` leases batches with FOR UPDATE SKIP LOCKED: at most `prefetch` leases
  per queue not yet finishing, and at most HELD_PER_PREFETCH (4) x `prefetch` held in
  all (finishing ones are still being committed; see workers/leases.py), waking on
  LISTEN and polling at least every second.
- `ack` records the outputs (fenced), `nack` the failure (retry/backoff decided in
  Postgres), `requeue` hands never-started leases back without spending an attempt.
- `enqueue()` of a plain Dramatiq message (`actor.send()`) creates a one-node run.
- Nodes a completion releases may be leased by the completion's own transaction
  (workers/completions.py); `take()` hands them to the consumer of their queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import dramatiq
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.errors import QueueNotFound
from dramatiq.message import Message

from dagq.errors import DagqError
from dagq.models import LeasedNode
from dagq.store import Completion, Handoff, Store
from dagq.workers.completions import CompletionBatcher
from dagq.workers.dramatiq_internals import stuffed_exception
from dagq.workers.errors import FatalError, NodeCancelled
from dagq.workers.leases import LeaseBook, LeaseKey
from dagq.workers.listener import QueueListener
from dagq.workers.middleware import DagqMiddleware, message_key
from dagq.workers.outcomes import check_outputs, describe_error
from dagq.workers.registry import ExecutorDef
from dagq.workflow import parse_spec

log = logging.getLogger("dagq.broker")

POLL_S = 1.0
PLAIN_TENANT = "default"


class PostgresBroker(dramatiq.Broker):
    def __init__(
        self, repo: Store, *, worker_id: str, lease_ttl_s: float,
        max_output_bytes: int, listener: QueueListener | None = None,
        book: LeaseBook | None = None,
    ) -> None:
        """`book`: the leases this process holds, shared with the supervisor and the
        shutdown (`dagq.workers.process` makes one and hands it to each); a broker
        built on its own (tests, the `dramatiq` CLI) makes its own."""
        self.repo = repo
        self.worker_id = worker_id
        self.lease_ttl_s = lease_ttl_s
        self.max_output_bytes = max_output_bytes
        self.listener = listener
        self.book = book if book is not None else LeaseBook()
        self.completions = CompletionBatcher(repo, self)
        self.executors: dict[str, ExecutorDef] = {}
        self.stopping = False
        self._consumers: dict[str, PostgresConsumer] = {}
        self._handoff_executors: list[str] = []
        super().__init__(middleware=[DagqMiddleware(self.book)])
        self.queues: dict[str, None] = {}  # Dramatiq reads .keys()

    # -- declarations -----------------------------------------------------------------

    def declare_queue(self, queue_name: str) -> None:
        if queue_name in self.queues:
            return
        self.emit_before("declare_queue", queue_name)
        self.queues[queue_name] = None
        self.emit_after("declare_queue", queue_name)

    def declare_executor(self, definition: ExecutorDef) -> None:
        """Serve a dagq node executor: a Dramatiq actor named after it."""
        self.executors[definition.name] = definition
        dramatiq.actor(
            _executor_entry(self.book, definition), actor_name=definition.name,
            queue_name=definition.queue, broker=self, max_retries=0,
        )

    def served_executors(self) -> list[str]:
        return sorted(self.actors)

    @property
    def capped(self) -> frozenset[str]:
        """Served executors declared with a concurrency or rate cap."""
        return frozenset(name for name, d in self.executors.items()
                         if d.concurrency is not None or d.rate_per_s is not None)

    # -- consuming --------------------------------------------------------------------

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 30000) -> Consumer:
        if queue_name not in self.queues:
            raise QueueNotFound(queue_name)
        consumer = PostgresConsumer(self, self.book, queue_name, prefetch, timeout)
        # Capped executors are only ever leased where their caps are checked.
        self._handoff_executors = sorted(set(self.served_executors()) - self.capped)
        self._consumers[queue_name] = consumer
        return consumer

    # -- hand-off: nodes leased by a completion's transaction -------------------------

    def handoff(self) -> Handoff | None:
        """Free prefetch slots per consumed queue, for the completion batcher."""
        if self.stopping:
            return None
        room = {queue: self.book.room(queue, consumer.prefetch)
                for queue, consumer in list(self._consumers.items())}
        room = {queue: free for queue, free in room.items() if free > 0}
        if not room or not self._handoff_executors:
            return None
        return Handoff(self.worker_id, self.lease_ttl_s, self._handoff_executors, room)

    def take(self, nodes: list[LeasedNode]) -> None:
        """Queue handed-off leases for execution; give back any no consumer can take."""
        orphans = [node for node in nodes
                   if (consumer := self._consumers.get(node.queue)) is None
                   or not consumer.accept(node)]
        if not orphans:
            return
        try:
            self.repo.requeue_unstarted(worker=self.worker_id,
                                        leases=[(n.id, n.version) for n in orphans])
        except DagqError:
            log.warning("could not hand back %d node(s); their leases will expire",
                        len(orphans))

    # -- plain Dramatiq messages ------------------------------------------------------

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        """`actor.send(...)` becomes a one-node run (idempotent by message id)."""
        self.declare_queue(message.queue_name)
        key = message.actor_name
        actor = self.actors.get(key)
        retries = int(actor.options.get("max_retries", 2)) if actor else 2
        spec = parse_spec({
            "name": _safe_key(key),
            "nodes": {_safe_key(key): {
                "executor": key, "queue": message.queue_name,
                "params": {"args": list(message.args), "kwargs": dict(message.kwargs)},
                "max_attempts": min(retries + 1, 100),
            }},
        })
        self.emit_before("enqueue", message, delay)
        self.repo.submit_run(tenant=PLAIN_TENANT, spec=spec, event_key=message.message_id,
                             inputs={"args": list(message.args)})
        self.emit_after("enqueue", message, delay)
        return message

    def flush(self, queue_name: str) -> None:
        raise NotImplementedError("dagq keeps every run; cancel runs instead of flushing")

    def flush_all(self) -> None:
        raise NotImplementedError("dagq keeps every run; cancel runs instead of flushing")

    def join(self, queue_name: str, *, timeout: int | None = None) -> None:
        raise NotImplementedError("follow a run's events instead of joining a queue")


def _safe_key(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "_" for c in name)
    return cleaned[:64] or "actor"


def _executor_entry(book: LeaseBook, definition: ExecutorDef) -> Any:
    """The actor function: run the executor on the leased node's payload."""

    def run_node(node_id: int, version: int) -> Any:
        lease = book.get((node_id, version))
        if lease is None or lease.lost:
            raise NodeCancelled("lease no longer held")
        return definition.fn(lease.node.payload())

    run_node.__name__ = run_node.__qualname__ = definition.name.replace(".", "_")
    run_node.__module__ = getattr(definition.fn, "__module__", __name__)
    return run_node


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
        self.buffer: deque[MessageProxy] = deque()
        self._closing = threading.Lock()  # accept() vs close(): no lease is stranded
        self.closed = False
        self.drained = False  # the last lease got fewer nodes than it had room for
        # Executors are all declared before consuming starts; compute the lists once.
        self.executors = broker.served_executors()
        self.capped = sorted(broker.capped)

    def __iter__(self) -> PostgresConsumer:
        return self

    def __next__(self) -> MessageProxy | None:
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
        room = book.room(self.queue, self.prefetch)
        nodes = broker.repo.lease(
            worker=broker.worker_id, queue=self.queue, limit=room,
            ttl_s=broker.lease_ttl_s, executors=self.executors, capped=self.capped,
        ) if room > 0 else []
        self.drained = len(nodes) < room
        if not nodes:
            return None
        for node in nodes:
            book.add(node, self.queue)
            self.buffer.append(MessageProxy(self._message(node)))
        return self.buffer.popleft()

    def accept(self, node: LeasedNode) -> bool:
        """Take a node leased for this worker elsewhere (a completion's hand-off)."""
        with self._closing:
            if self.closed or self.broker.stopping:
                return False
            self.book.add(node, self.queue)
            self.buffer.append(MessageProxy(self._message(node)))
        self.book.poke()
        if self.broker.listener:
            self.broker.listener.event(self.queue).set()
        return True

    def _message(self, node: Any) -> Message:
        definition = self.broker.executors.get(node.executor)
        if definition is not None:
            args: tuple[Any, ...] = (node.id, node.version)  # the lease's key
            kwargs: dict[str, Any] = {}
        else:  # a plain Dramatiq actor sent with actor.send()
            args = tuple(node.params.get("args", ()))
            kwargs = dict(node.params.get("kwargs", {}))
        return Message(
            queue_name=self.queue, actor_name=node.executor, args=args, kwargs=kwargs,
            # pipe_target: Dramatiq warns about discarded return values unless a message
            # has one; dagq keeps them (ack stores them). No Pipelines middleware runs.
            options={"dagq_node_id": node.id, "dagq_version": node.version,
                     "dagq_timeout_s": node.timeout_s, "pipe_target": "dagq"},
            message_id=f"{node.id}.{node.version}",
        )

    # -- outcomes (called from worker threads) ----------------------------------------
    # Each attempt is its lease's (node id, version) key: a late outcome of an attempt
    # that was taken back touches only that attempt, never a newer lease of the node.
    # Nothing raised here may escape to Dramatiq: whatever fails after the executor
    # returned ends the attempt (failed, with the error) and releases its lease.

    def ack(self, message: MessageProxy) -> None:
        """Hand the outputs to the group committer; the lease is released once they are
        committed (see workers/completions.py)."""
        key = message_key(message)
        lease = self.book.get(key)
        if lease is None or lease.lost:
            log.info("node %s finished after its lease was lost; outcome discarded", key[0])
            self.book.remove(key)
            return
        try:
            outputs = check_outputs(
                lease.result, plain=lease.node.executor not in self.broker.executors,
                max_bytes=self.broker.max_output_bytes)
            completion = Completion(key[0], key[1], outputs, self._wake(lease))
            self.book.finishing(key)
            self.broker.completions.submit(completion,
                                           lambda ok: self._completed(key, ok))
        except Exception as exc:  # noqa: BLE001 - see above
            lease.result = None
            self._end_failed(message, key, exc)

    def _completed(self, key: LeaseKey, recorded: bool | None) -> None:
        if recorded is False:
            log.info("stale completion of node %s ignored (lease reclaimed)", key[0])
        self.book.remove(key)

    def nack(self, message: MessageProxy) -> None:
        key = message_key(message)
        lease = self.book.get(key)
        if lease is None or lease.lost:
            log.info("node %s failed after its lease was lost; outcome discarded", key[0])
            self.book.remove(key)
            return
        exc = stuffed_exception(message) or RuntimeError("the node failed without an exception")
        self._end_failed(message, key, exc)

    def _end_failed(self, message: MessageProxy, key: LeaseKey, exc: BaseException) -> None:
        try:
            self._record_failure(message, exc, retryable=not isinstance(exc, FatalError))
        except Exception:  # noqa: BLE001 - the lease expires and the sweeper retries it
            log.exception("could not record the failure of node %s; its lease will expire",
                          key[0])
        finally:
            self.book.remove(key)

    def requeue(self, messages: Any) -> None:
        leases = [message_key(m) for m in messages]
        if not leases:
            return
        try:
            count = self.broker.repo.requeue_unstarted(worker=self.broker.worker_id,
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

    def _record_failure(self, message: MessageProxy, exc: BaseException, *,
                        retryable: bool) -> None:
        node_id, version = message_key(message)
        lease = self.book.get((node_id, version))
        outcome = self.broker.repo.fail(
            node_id, version, describe_error(exc, message.options.get("dagq_timeout_s")),
            retryable=retryable and not isinstance(exc, NodeCancelled),
            cancelled=isinstance(exc, NodeCancelled),
            wake_queue=self._wake(lease) if lease else None,
        )
        if outcome == "stale":
            log.info("stale failure of node %s ignored", node_id)
