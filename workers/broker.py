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
from typing import Any

import dramatiq
from dramatiq.broker import Consumer
from dramatiq.errors import QueueNotFound
from dramatiq.message import Message

from dagq.errors import DagqError
from dagq.models import LeasedNode
from dagq.store import Handoff, Store
from dagq.workers.completions import CompletionBatcher
from dagq.workers.consumer import PostgresConsumer
from dagq.workers.errors import NodeCancelled
from dagq.workers.leases import LeaseBook
from dagq.workers.listener import QueueListener
from dagq.workers.middleware import DagqMiddleware
from dagq.workers.registry import ExecutorDef
from dagq.workers.streams import StreamWriter
from dagq.workflow import parse_spec

log = logging.getLogger("dagq.broker")

PLAIN_TENANT = "default"


class PostgresBroker(dramatiq.Broker):
    def __init__(
        self, repo: Store, *, worker_id: str, lease_ttl_s: float,
        max_output_bytes: int, listener: QueueListener | None = None,
        book: LeaseBook | None = None, streams: StreamWriter | None = None,
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
        # Executors' streamed output; a broker built on its own writes it synchronously.
        self.streams = streams if streams is not None else StreamWriter(repo)
        super().__init__(middleware=[DagqMiddleware(self.book, self.streams)])
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
