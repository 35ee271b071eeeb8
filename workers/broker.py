"""A Dramatiq broker whose queue is `dagq.node_tasks`: consume is the lease.

- `consume()` leases batches with FOR UPDATE SKIP LOCKED: at most `prefetch` leases
  per queue not yet finishing, and at most HELD_PER_PREFETCH (4) x `prefetch` held in
  all (finishing ones are still being committed; see workers/leases.py), waking on
  LISTEN and polling at least every second.
- `ack` records the outputs (fenced), `nack` the failure (retry/backoff decided in
  Postgres), `requeue` hands never-started leases back without spending an attempt.
- `enqueue()` of a plain Dramatiq message (`actor.send()`) creates a one-node run that
  carries the message (workers/messages.py maps its options onto the node).
- Middleware: Dramatiq's default stack with DagqRetries in place of Retries (see
  DEFAULT_MIDDLEWARE); dagq's own hooks (DagqMiddleware) run around all of it.
- `join`/`flush`/`flush_all` as Dramatiq's testing pattern expects (workers/joining.py).
- Nodes a completion releases may be leased by the completion's own transaction
  (workers/completions.py); `take()` hands them to the consumer of their queue.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import dramatiq
from dramatiq.broker import Consumer
from dramatiq.errors import QueueNotFound
from dramatiq.message import Message
from dramatiq.middleware import (
    AgeLimit,
    AsyncIO,
    Callbacks,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from dagq.config import get_settings
from dagq.errors import DagqError
from dagq.models import LeasedNode
from dagq.spec.workflow import WorkflowSpec
from dagq.store import Handoff, Store
from dagq.store.notifier import BackgroundNotifier
from dagq.workers import log_lines
from dagq.workers.completions import CompletionBatcher
from dagq.workers.consumer import PostgresConsumer
from dagq.workers.entries import executor_entry
from dagq.workers.hooks import HookTable
from dagq.workers.joining import QueueJoiner
from dagq.workers.leases import LeaseBook
from dagq.workers.listener import QueueListener
from dagq.workers.messages import (
    MAX_TIMEOUT_S,
    TIME_LIMIT_MARGIN_S,
    message_trace,
    plain_node,
    plain_run,
)
from dagq.workers.middleware import DagqMiddleware
from dagq.workers.registry import ExecutorDef
from dagq.workers.retries import DagqRetries
from dagq.workers.standalone import SelfServing, new_worker_id, own_store
from dagq.workers.streams import StreamWriter
from dagq.workers.tracing import with_attempt_spans

log = logging.getLogger("dagq.broker")

PLAIN_TENANT = "default"
# Dramatiq's default middleware (dramatiq.middleware.default_middleware), in its order,
# with Retries replaced by DagqRetries: Postgres' `attempts` counts retries and the fail
# transaction schedules them (see workers/retries.py). Prometheus is not in Dramatiq's
# defaults either; dagq's /metrics covers queues and nodes (add Dramatiq's Prometheus
# middleware yourself for its per-actor histograms under the `dramatiq` CLI). AsyncIO
# (Dramatiq's, not in its defaults) is added: `async def` actors and executors run on
# its per-process event loop, started at worker_boot.
DEFAULT_MIDDLEWARE: tuple[type[Middleware], ...] = (
    AgeLimit, TimeLimit, ShutdownNotifications, Callbacks, Pipelines, DagqRetries, AsyncIO)
# dagq executors keep their own timeout (timeout_s): TimeLimit must never fire first.
EXECUTOR_TIME_LIMIT_MS = int((MAX_TIMEOUT_S + TIME_LIMIT_MARGIN_S + 1) * 1000)


class PostgresBroker(dramatiq.Broker):
    def __init__(
        self, repo: Store | None = None, *, url: str | None = None,
        worker_id: str | None = None, lease_ttl_s: float | None = None,
        max_output_bytes: int | None = None, listener: QueueListener | None = None,
        book: LeaseBook | None = None, streams: StreamWriter | None = None,
        middleware: list[Middleware] | None = None, fail_fast_default: bool = True,
    ) -> None:
        """`book`: the leases this process holds, shared with the supervisor and the
        shutdown (`dagq.workers.process` makes one and hands it to each); a broker
        built on its own (tests, the `dramatiq` CLI) makes its own. `middleware`: as
        Dramatiq's brokers take it (default: DEFAULT_MIDDLEWARE); a Retries in it is
        replaced by a DagqRetries with its settings. DagqMiddleware is not in it: the
        broker runs its hooks first and last (emit_before/emit_after).
        `fail_fast_default`: join's `fail_fast` when not given (StubBroker's, True).

        Without `repo`, the broker is on its own (the `dramatiq` CLI, tests): it opens a
        pool for `url` (default DAGQ_DATABASE_URL) and, once it consumes, runs LISTEN,
        heartbeats and the committer itself (workers/standalone.py); the settings give
        the lease TTL and output limit not passed here."""
        settings = get_settings()
        self._own: SelfServing | None = None
        owned = repo is None
        if repo is None:
            repo, url = own_store(url)
        self.repo = repo
        # Sends: one round trip each, their NOTIFY sent by a thread (dagq.store.notifier).
        self._notifier = BackgroundNotifier(repo.db.pool, name="dagq-send-notifier")
        self._sender = repo.notifying_in_background(self._notifier)
        self._batching = threading.local()
        self.worker_id = worker_id or new_worker_id()
        self.lease_ttl_s = lease_ttl_s or settings.lease_ttl_s
        self.max_output_bytes = max_output_bytes or settings.max_output_bytes
        self.listener = listener
        self.book = book if book is not None else LeaseBook()
        self.completions = CompletionBatcher(repo, self)
        self.executors: dict[str, ExecutorDef] = {}
        self.stopping = False
        self._consumers: dict[str, PostgresConsumer] = {}
        self._handoff_executors: list[str] = []
        self.served: list[str] = []  # the actors consumers lease for (kept current)
        # Lists this worker's actors in its row again (set by whoever registered it):
        # called when an actor is declared once consumers run.
        self.on_actors_changed: Callable[[], None] | None = None
        self._declaring = threading.RLock()
        self.capped_list: list[str] = []
        # Executors' streamed output; a broker built on its own writes it synchronously.
        self.streams = streams if streams is not None else StreamWriter(repo)
        self.queues: dict[str, None] = {}  # Dramatiq reads .keys()
        self.joiner = QueueJoiner(self)
        self.fail_fast_default = fail_fast_default
        stack = [m() for m in DEFAULT_MIDDLEWARE] if middleware is None else [
            _dagq_retries(m) if isinstance(m, Retries) else m for m in middleware]
        # Not in `self.middleware` (Dramatiq's stack, as users see it): run before every
        # middleware and after all; the stack's hooks go through workers.hooks.HookTable.
        self.lease_hooks, self._hook_table = DagqMiddleware(self.book, self.streams), HookTable()
        super().__init__(middleware=with_attempt_spans(stack, self.book, repo))
        log_lines.install()  # lines name the node; a failed attempt is told once
        if owned and listener is None and url is not None:
            self._own = SelfServing(self, url)
            self.listener = self._own.listener

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        if signal == "process_message":  # the lease begins before any middleware runs
            self.lease_hooks.before_process_message(self, *args)
        self._hook_table.emit_before(self, self.middleware, signal, *args, **kwargs)

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        self._hook_table.emit_after(self, self.middleware, signal, *args, **kwargs)
        if signal == "process_message":  # once DagqRetries and the others have decided
            self.lease_hooks.after_process_message(self, *args, **kwargs)
        elif signal == "skip_message":
            self.lease_hooks.after_skip_message(self, *args)

    def close(self) -> None:
        """Send the notifications still pending; a broker on its own also stops its
        helpers and closes its pool."""
        self._notifier.stop()
        if self._own is not None:
            self._own.stop()
            self.repo.close()

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
        # No retry options: DagqRetries leaves executors' messages to dagq's own rule.
        dramatiq.actor(
            executor_entry(self.book, definition), actor_name=definition.name,
            queue_name=definition.queue, broker=self,
            **({"time_limit": EXECUTOR_TIME_LIMIT_MS} if self._has(TimeLimit) else {}),
        )

    def declare_actor(self, actor: dramatiq.Actor[Any, Any]) -> None:
        """Also when the worker already runs: its consumers lease for it from now on.
        (Serialised: threads declaring at once must not read the actors mid-change.)"""
        with self._declaring:
            super().declare_actor(actor)
            self.served = sorted(self.actors)
            self.capped_list = sorted(self.capped)
            if self._consumers:
                self._handoff_executors = sorted(set(self.served) - self.capped)
                self._actors_changed()

    def _actors_changed(self) -> None:
        """The worker's row lists a late actor too, so its messages count as served
        (queue_depth, dead letters) from now on, not from the next restart. Best effort:
        the actor is served either way, so nothing escapes to the declaring code."""
        changed = self.on_actors_changed
        if changed is None:
            return
        try:
            changed()
        except Exception as exc:  # noqa: BLE001 - a declaration must not fail for this
            log.warning("could not list the worker's new actors: %s", exc)

    def served_executors(self) -> list[str]:
        return sorted(self.actors)

    def attempt_of(self, key: tuple[int, int]) -> tuple[int, int] | None:
        """(attempt, max_attempts) of a lease this process holds."""
        lease = self.book.get(key)
        return None if lease is None else (lease.node.attempts, lease.node.max_attempts)

    def _has(self, kind: type[Middleware]) -> Middleware | None:
        return next((m for m in self.middleware if isinstance(m, kind)), None)

    @property
    def capped(self) -> frozenset[str]:
        """Served executors declared with a concurrency or rate cap."""
        return frozenset(name for name, d in self.executors.items()
                         if d.concurrency is not None or d.rate_per_s is not None)

    # -- consuming --------------------------------------------------------------------

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 30000) -> Consumer:
        if queue_name not in self.queues:
            raise QueueNotFound(queue_name)
        if self._own is not None:
            self._own.serve(queue_name)
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
            self.repo.leases.requeue_unstarted(worker=self.worker_id,
                                               leases=[(n.id, n.version) for n in orphans])
        except DagqError:
            log.warning("could not hand back %d node(s); their leases will expire",
                        len(orphans))

    # -- plain Dramatiq messages ------------------------------------------------------

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        """`actor.send(...)` becomes a one-node run carrying the message, idempotent by
        message id; `delay` (ms) makes it available that much later. One statement, one
        round trip (its NOTIFY goes out from the notifier thread once it committed).
        Inside `with broker.batch():` (and without a delay) it is sent at the batch's
        end, with the others, in one statement."""
        _check_delay(delay)
        pending = getattr(self._batching, "messages", None)
        if pending is not None and not delay:
            pending.append(message)
            return message
        spec = self._spec(message)
        self.emit_before("enqueue", message, delay)
        self._sender.submissions.submit_run(
            tenant=PLAIN_TENANT, spec=spec, event_key=message.message_id,
            inputs={"args": list(message.args)},
            delay_s=delay / 1000 if delay else None, traceparent=message_trace(message))
        self.emit_after("enqueue", message, delay)
        return message

    def enqueue_many(self, messages: Iterable[Message], *,
                     delay: int | None = None) -> list[Message]:
        """Send many messages in one statement (dagq.store.submissions), each idempotent
        by its message id as `enqueue` is; with a `delay`, one statement each."""
        _check_delay(delay)
        messages = list(messages)
        if delay:
            return [self.enqueue(message, delay=delay) for message in messages]
        runs = []
        for message in messages:
            spec = self._spec(message)
            self.emit_before("enqueue", message, delay)
            runs.append(plain_run(spec, message, tenant=PLAIN_TENANT,
                                  traceparent=message_trace(message)))
        for outcome in self._sender.submissions.submit_runs(runs):
            if isinstance(outcome, DagqError):
                raise outcome
        for message in messages:
            self.emit_after("enqueue", message, delay)
        return messages

    @contextlib.contextmanager
    def batch(self) -> Iterator[list[Message]]:
        """Messages this thread enqueues inside (`group(...).run()`, `actor.send()`) are
        sent together when it exits, in one statement (`enqueue_many`); delayed ones at
        once, one by one. Nothing is sent if the block raises."""
        outer = getattr(self._batching, "messages", None)
        if outer is not None:  # nested: the outermost batch sends
            yield outer
            return
        self._batching.messages = pending = []
        try:
            yield pending
        finally:
            self._batching.messages = None
        if pending:
            self.enqueue_many(pending)

    def _spec(self, message: Message) -> WorkflowSpec:
        self.declare_queue(message.queue_name)
        retries, time_limit = self._has(DagqRetries), self._has(TimeLimit)
        return plain_node(
            message, self.actors.get(message.actor_name), name=_safe_key(message.actor_name),
            # Without a Retries middleware Dramatiq never retries: one attempt.
            default_retries=retries.max_retries if isinstance(retries, DagqRetries) else 0,
            default_backoff_ms=(retries.min_backoff, retries.max_backoff)
            if isinstance(retries, DagqRetries) else (0, 0),
            default_time_limit_ms=time_limit.time_limit if isinstance(time_limit, TimeLimit)
            else None)

    def flush(self, queue_name: str) -> None:
        """Drop the messages waiting in `queue_name` (their runs are cancelled)."""
        self.joiner.flush(queue_name)

    def flush_all(self) -> None:
        for queue_name in list(self.queues):
            self.joiner.flush(queue_name)

    def join(self, queue_name: str, *, timeout: int | None = None,
             fail_fast: bool | None = None) -> None:
        """Wait until `queue_name` has nothing queued (delayed included) or running; then,
        with `fail_fast` (default: `fail_fast_default`), raise the exception of a message
        that failed for good since the queue was last flushed (see workers/joining.py)."""
        self.joiner.join(queue_name, timeout_ms=timeout,
                         fail_fast=self.fail_fast_default if fail_fast is None else fail_fast)


def _check_delay(delay: Any) -> None:
    if delay is not None and (not isinstance(delay, int | float) or delay < 0):
        raise ValueError(f"delay must be a non-negative number of ms, not {delay!r}")


def _dagq_retries(retries: Retries) -> DagqRetries:
    """A Retries given to the broker, as the DagqRetries with its settings."""
    return DagqRetries(max_retries=retries.max_retries, min_backoff=retries.min_backoff,
                       max_backoff=retries.max_backoff, retry_when=retries.retry_when)


def _safe_key(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "_" for c in name)
    return cleaned[:64] or "actor"
