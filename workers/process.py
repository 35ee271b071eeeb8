"""One worker process: a Dramatiq Worker on the Postgres broker, plus its supervisor.

Shutdown on SIGTERM/SIGINT: stop leasing, hand prefetched (unstarted) leases back at
once, say what still runs and let it finish for the grace period (DAGQ_SHUTDOWN_GRACE_S);
at its end, or at once when told to hurry (a second Ctrl-C: see dagq.runtime.procs.StopRequest),
hand the attempts still running back without charging them (`node_released`: a planned
stop is not a failure) and interrupt their executors, whose outcomes the new version
fences off; then mark the worker stopped. Each step after the grace period is bounded
too, and so is every database call once the shutdown began (a database that does not
answer is given up on in seconds, not retried for a minute; the leases it could not
release then expire, as a crash's do), so that a worker always exits before `dagq up`
would kill it.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable

import dramatiq
from dramatiq import Worker

from dagq.config import Settings
from dagq.errors import DagqError
from dagq.runtime.budget import worker_pool_size
from dagq.runtime.db import SessionLimits, open_pool
from dagq.runtime.procs import (
    CANNOT_START,
    EXIT_CANNOT_START,
    READY,
    StopRequest,
    tell_parent,
    wait_for_stop,
)
from dagq.store import Store
from dagq.workers.broker import PostgresBroker
from dagq.workers.dramatiq_internals import consumer_of, take_waiting_messages
from dagq.workers.errors import WorkerShutdown
from dagq.workers.leases import LeaseBook
from dagq.workers.listener import QueueListener
from dagq.workers.registry import registered
from dagq.workers.streams import StreamWriter
from dagq.workers.supervisor import Supervisor

log = logging.getLogger("dagq.worker")

# Once stopping, the broker's database calls give up after about this long.
DB_CALL_S = 2.0
# After the grace, CLEANUP_S in all (dagq up's own grace, 45 s, covers the default grace,
# this and closing the pool): the worker threads end (interrupted nodes), then the
# consumers, up to JOIN_S each, and hand back what they prefetched; the last completions
# are written until DB_CALL_S before the end (2 s at least, unless a database that does
# not answer delayed the hand-backs); then the worker is marked stopped, in DB_CALL_S.
JOIN_S = 3.0
# How often a changed executor declaration whose row was held at start is written again.
REGISTER_AGAIN_S = 1.0
CLEANUP_S = 10.0
# Leases held per thread: enough that a batch is in memory while the next is leased.
PREFETCH_PER_THREAD = 4
# While it waits for running nodes, a stopping worker says what they are this often.
REPORT_EVERY_S = 5.0


class CannotStart(Exception):
    """A module in DAGQ_ACTOR_MODULES cannot be imported: this worker cannot serve."""


def load_executors(broker: PostgresBroker, modules: list[str], *,
                   test_executors: bool = False) -> None:
    """Built-ins (builtin.fail/crash only with `test_executors`) plus DAGQ_ACTOR_MODULES,
    imported after the broker is set. A module that fails to import raises CannotStart
    with a one-line reason."""
    builtins = importlib.import_module("dagq.workers.builtins")
    if test_executors:
        builtins.register_test_executors()
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # whatever the module raises while it is imported
            raise CannotStart(_import_failure(module, exc)) from None
    adopt_module_broker(broker)
    for definition in registered().values():
        broker.declare_executor(definition)


def adopt_module_broker(broker: PostgresBroker) -> None:
    """A module that called `dramatiq.set_broker(PostgresBroker(url=...))` itself (so it
    also runs under the `dramatiq` CLI): its actors and its own middleware (Results, ...)
    move to this worker's broker, which stays the global one. Any other broker cannot
    be served here: CannotStart says so."""
    theirs = dramatiq.broker.global_broker
    if theirs is None or theirs is broker:
        return
    if not isinstance(theirs, PostgresBroker):
        raise CannotStart(f"an actor module set a {type(theirs).__name__} with "
                          "dramatiq.set_broker; dagq worker serves PostgresBroker actors")
    kinds = {type(m) for m in broker.middleware}
    for middleware in theirs.middleware:
        if type(middleware) not in kinds:
            broker.add_middleware(middleware)
    for actor in list(theirs.actors.values()):
        actor.broker = broker
        broker.declare_actor(actor)
    log.info("serving the %d actor(s) of the PostgresBroker an actor module set",
             len(theirs.actors))
    dramatiq.set_broker(broker)
    theirs.close()


def _import_failure(module: str, exc: Exception) -> str:
    """`cannot import 'mod' (DAGQ_ACTOR_MODULES): Kind: message (file:line)`, one line;
    the place is the innermost frame outside importlib and this file."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<") and f.filename != __file__
              and "importlib" not in f.filename]
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    message = " ".join(str(exc).split())[:300]
    return (f"cannot import {module!r} (DAGQ_ACTOR_MODULES): {type(exc).__name__}: "
            f"{message}{where}")


def run_worker(settings: Settings, url: str, *, threads: int, queues: list[str] | None,
               stop: StopRequest) -> int:
    """Serve until `stop` is set (by a signal: see dagq.runtime.procs.stop_on_signals)."""
    worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    repo = Store(open_pool(url, size=worker_pool_size(settings, threads), name="worker",
                           generic_plans=True, limits=SessionLimits.for_workers(settings)))
    listener = QueueListener(url)
    book = LeaseBook()  # the leases held: shared by broker, supervisor and shutdown
    streams = StreamWriter(repo)
    broker = PostgresBroker(
        repo, worker_id=worker_id, lease_ttl_s=settings.lease_ttl_s,
        max_output_bytes=settings.max_output_bytes, listener=listener, book=book,
        streams=streams,
    )
    dramatiq.set_broker(broker)  # before any user module can declare an actor
    if not _loaded(broker, settings):
        repo.close()
        return EXIT_CANNOT_START
    broker.emit_after("process_boot")  # as the dramatiq CLI does: TimeLimit's timer starts
    serve = sorted(set(queues) if queues else set(broker.queues) | {"default"})
    for name in serve:
        broker.declare_queue(name)

    def register(store: Store = repo) -> list[str]:
        return store.fleet.register_worker(
            worker=worker_id, hostname=socket.gethostname(), pid=os.getpid(), queues=serve,
            threads=threads, heartbeat_s=settings.heartbeat_s,
            executors=[d.info() for d in registered().values()], actors=sorted(broker.actors),
        )

    def register_bounded() -> list[str]:
        return register(repo.bounded(DB_CALL_S))

    def register_all(first: list[str]) -> None:
        if first:  # changed declarations whose rows another worker's lease holds now
            _register_later(register_bounded, first, stop)

    register_all(register())
    repo.partitions.ensure_ahead()  # event partitions ahead, even with no sweeper running
    # Again for an actor declared later (broker.py), bounded: a declaration never waits
    # out a database outage.
    broker.on_actors_changed = lambda: register_all(register_bounded())
    listener.start()
    broker.completions.start()
    streams.start()
    supervisor = Supervisor(broker, book, heartbeat_s=settings.heartbeat_s)
    listener.on_cancel = supervisor.runs_cancelled  # a cancel reaches running nodes now
    supervisor.start()
    worker = Worker(broker, queues=set(serve), worker_threads=threads, worker_timeout=1000)
    worker.queue_prefetch = PREFETCH_PER_THREAD * threads
    worker.start()
    tell_parent(READY)  # a crash from now on is restarted at once (dagq.runtime.procs)
    log.info("worker %s serving queues %s with %d threads", worker_id, ",".join(serve),
             threads)
    wait_for_stop(stop)  # returns at once if a signal came during startup
    _shut_down(worker, broker, book, supervisor, listener, grace_s=settings.shutdown_grace_s,
               stop=stop)
    return 0


def _loaded(broker: PostgresBroker, settings: Settings) -> bool:
    """Import the actor modules; False, having said why in one line, if one cannot be."""
    try:
        load_executors(broker, settings.actor_module_list,
                       test_executors=settings.test_executors == "on")
    except CannotStart as exc:  # one line, no traceback; `dagq up` says it, or backs off
        if not tell_parent(CANNOT_START, str(exc)):
            log.error("worker cannot start: %s", exc)
        return False
    return True


def _register_later(register: Callable[[], list[str]], held: list[str],
                    stop: StopRequest) -> None:
    """Write the executors whose changed declaration could not be written at start
    (their rows held by another worker's lease transaction, perhaps frozen: the server
    ends it within DAGQ_DB_IDLE_IN_TRANSACTION_TIMEOUT_S) again every REGISTER_AGAIN_S,
    in the background: the worker serves meanwhile (the stored declaration is the
    previous one until then)."""
    log.warning("executor(s) %s: their stored declaration is held by another "
                "transaction; writing it in the background", ", ".join(held))

    def again() -> None:
        left = held
        while left and not stop.is_set():
            time.sleep(REGISTER_AGAIN_S)
            try:
                left = register()
            except DagqError as exc:
                log.warning("could not register executors %s yet: %s", ", ".join(left), exc)

    threading.Thread(target=again, name="dagq-register-again", daemon=True).start()


def _shut_down(worker: Worker, broker: PostgresBroker, book: LeaseBook, supervisor: Supervisor,
               listener: QueueListener, *, grace_s: float = 30.0,
               stop: StopRequest | None = None) -> None:
    """Stop in order: hand back what never started, let running nodes finish for
    `grace_s` (DAGQ_SHUTDOWN_GRACE_S) unless `stop` hurries, hand the rest back
    uncharged and interrupt them, then stop every thread, each step bounded."""
    started = time.monotonic()
    broker.stopping = True
    broker.on_actors_changed = None  # the row is about to say stopped: keep it so
    # The completion batcher keeps the patient repository: its stop is bounded.
    broker.repo = broker.repo.bounded(DB_CALL_S)
    broker.streams.repo = broker.repo  # the last chunks' writes are bounded too
    _requeue_waiting(worker)
    _wait_for_running(book, started + grace_s, stop)
    _hand_back_running(broker, book, hurried=stop is not None and stop.hurried())
    cleanup_until = time.monotonic() + CLEANUP_S
    worker.stop(timeout=int(JOIN_S * 1000))  # worker threads, then consumers: each
    broker.streams.stop(timeout=DB_CALL_S)
    broker.completions.stop(timeout=max(0.0, cleanup_until - DB_CALL_S - time.monotonic()))
    supervisor.stop()
    listener.stop()
    try:
        broker.repo.fleet.stop_worker(broker.worker_id)
    except DagqError as exc:  # the sweeper marks it dead after missed heartbeats
        log.warning("could not mark worker %s stopped: %s", broker.worker_id, exc)
    broker.close()  # sends its pending notifications (actors' send()s) while the pool lives
    broker.repo.close()
    log.info("worker %s stopped in %.2fs", broker.worker_id, time.monotonic() - started)


def _wait_for_running(book: LeaseBook, deadline: float, stop: StopRequest | None) -> None:
    """Until the running nodes finished, the grace ended or `stop` hurries; saying what
    runs now and then, so a stop is never silent."""
    next_report = 0.0
    while book.executing() and not (stop is not None and stop.hurried()):
        now = time.monotonic()
        if now >= deadline:
            return
        if now >= next_report:
            next_report = now + REPORT_EVERY_S
            _report_running(book, deadline - now)
        time.sleep(0.05)


def _report_running(book: LeaseBook, left_s: float) -> None:
    now = time.monotonic()
    running = [f"run {lease.node.run_id} node {lease.node.node_key!r} "
               f"(attempt {lease.node.attempts}, running {now - (lease.began_at or now):.1f}s)"
               for lease in book.executing_leases()]
    if running:
        log.info("stopping: waiting up to %.0fs more (DAGQ_SHUTDOWN_GRACE_S) for %d running "
                 "node(s), then handing them back without charging an attempt (Ctrl-C "
                 "again: now): %s", left_s, len(running), "; ".join(running))


def _hand_back_running(broker: PostgresBroker, book: LeaseBook, *, hurried: bool) -> None:
    """Give back every attempt still held (a planned stop: no attempt charged) and
    interrupt its executor; the release moves each node's version on, so an executor
    that finishes anyway cannot record its outcome."""
    keys = book.hand_back(WorkerShutdown)
    if not keys:
        return
    why = "told to stop now" if hurried else "the grace period ended"
    try:
        with broker.streams.paused():  # see StreamWriter.paused
            count = broker.repo.leases.release_leases(worker=broker.worker_id, leases=keys)
    except DagqError as exc:  # they expire, and are retried, as a crash's would be
        log.warning("%s, but could not hand back %d node(s) (%s); their leases will "
                    "expire", why, len(keys), exc)
        return
    log.info("%s: handed back %d node(s), queued again without charging an attempt",
             why, count)


def _requeue_waiting(worker: Worker) -> None:
    """Take never-started messages off the work queue and give their leases back."""
    for queue_name, messages in take_waiting_messages(worker).items():
        consumer = consumer_of(worker, queue_name)
        if consumer is not None:
            consumer.requeue(messages)
