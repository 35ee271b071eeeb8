"""The store's transaction core: `Database` (the pool and transactions), transient
retries (at one level only, `@transient`), notifications sent after commit (the outbox),
the channel names, and what a row's data can make a statement refuse (`BAD_DATA`)."""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ParamSpec, Self, TypeVar

import psycopg
from psycopg_pool import ConnectionPool
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_not_exception_type,
    stop_after_delay,
    stop_before_delay,
    wait_exponential_jitter,
)

from dagq.errors import DatabaseUnavailable
from dagq.runtime import failover
from dagq.runtime.db import WATCHDOG, DatabaseTimeout
from dagq.runtime.pooler import needs_transaction
from dagq.runtime.sqlfiles import queries
from dagq.store.notifier import BackgroundNotifier

log = logging.getLogger("dagq.store")

P = ParamSpec("P")
T = TypeVar("T")

QUEUED_CHANNEL = "dagq_queued"
EVENTS_CHANNEL = "dagq_events"
# Runs just cancelled (payload: run ids, comma-separated, or *): workers holding one of
# their nodes check their leases at once instead of at their next heartbeat.
CANCELLED_CHANNEL = "dagq_cancelled"
# A transaction wrote an event a webhook may subscribe to (its outbox trigger may have
# written deliveries): the sweeper's deliverer looks at once instead of at its next poll.
WEBHOOKS_CHANNEL = "dagq_webhooks"
TRANSIENT_RETRY_S = 60.0
STALE_COMPLETIONS = "stale_completions"  # dagq.counters: outcomes the fence ignored
LEASE_EXPIRED = {
    "type": "LeaseExpired",
    "message": "the worker holding this node stopped heartbeating (crashed, killed or "
               "partitioned)",
}


# Errors worth trying again: connection loss, serialization failure, deadlock, a lock or
# statement timeout (LockNotAvailable, QueryCanceled), a session the server ended
# because its transaction sat idle too long (its client was frozen), a pool timeout,
# and a server that turned out read-only or in recovery (a failover: 25006, 0A000
# "... during recovery"). dagq.runtime.failover.classify decides what `transient`
# retries; this tuple is for code that catches the common ones by type.
TRANSIENT_ERRORS = (psycopg.OperationalError, psycopg.errors.IdleInTransactionSessionTimeout,
                    psycopg.errors.ReadOnlySqlTransaction)

# Errors a row's data causes (and that recur whenever it is written): Postgres refusing
# a value (SQLSTATE class 22: a NUL, a lone surrogate, a number out of range), or the
# driver unable to encode it as JSON (not JSON, circular, nested too deep). A batch
# holding such a row is split to find it (the group commits of submits and of
# completions), never retried as a whole.
BAD_DATA = (psycopg.DataError, TypeError, ValueError, RecursionError)

# The deadline of the outermost store call running in this thread (API requests).
_call = threading.local()


def transient(fn: Callable[P, T]) -> Callable[P, T]:
    """Retry transient errors for the owner's `retry_s`, then give up cleanly; with a
    `call_timeout_s`, the whole call (every attempt, checkout and wait) ends by then.
    The owner is the method's object: its `db` (a repository's Database) holds both,
    else the object itself does."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        owner = args[0] if args else None
        owner = getattr(owner, "db", owner)
        retry_s = getattr(owner, "retry_s", TRANSIENT_RETRY_S)
        budget = getattr(owner, "call_timeout_s", None)
        outermost = budget is not None and getattr(_call, "deadline", None) is None
        retrying = Retrying(
            retry=retry_if_exception(failover.retryable)
            & retry_if_not_exception_type(DatabaseTimeout),  # its time is up
            wait=wait_exponential_jitter(multiplier=0.05, max=2.0),
            # Bounded calls never start a sleep they could not finish in time, nor one
            # that ends past the call's deadline (the next try would fail at once).
            stop=(stop_before_delay(retry_s) | _sleep_past_deadline) if budget
            else stop_after_delay(retry_s),
            reraise=True,
        )
        if outermost:
            _call.deadline = time.monotonic() + budget
        try:
            for attempt in retrying:
                with attempt:
                    return fn(*args, **kwargs)
        except DatabaseTimeout as exc:
            raise DatabaseUnavailable(str(exc)) from exc
        except psycopg.Error as exc:
            if not failover.retryable(exc):
                raise
            raise DatabaseUnavailable(f"database unavailable: {exc}") from exc
        finally:
            if outermost:
                _call.deadline = None
        raise AssertionError("unreachable")  # pragma: no cover

    return wrapper


def _sleep_past_deadline(retry_state: RetryCallState) -> bool:
    deadline = getattr(_call, "deadline", None)
    return deadline is not None and time.monotonic() + retry_state.upcoming_sleep >= deadline


def call_by(deadline: float | None, fn: Callable[P, T], *args: P.args,
            **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)`, every store call in it ending by `deadline` (monotonic) at
    the latest, retries included (DatabaseUnavailable then): an API request's bound
    counts from its arrival, so time it spent waiting before its calls (a group commit's
    batch ahead) is not granted again. None: each call's own bound."""
    outer = getattr(_call, "deadline", None)
    if deadline is not None:
        _call.deadline = deadline if outer is None else min(outer, deadline)
    try:
        return fn(*args, **kwargs)
    finally:
        _call.deadline = outer


# Notifications wait for their transaction to commit, then go out in a transaction of
# their own. A NOTIFY inside a durable transaction holds a database-wide lock until that
# transaction's WAL is flushed, which serialises every commit (no group commit); a
# transaction that only notifies writes no WAL and holds that lock for microseconds.
# A notification lost to a crash in between costs latency only: consumers poll.
_outbox = threading.local()


def notify_event_streams(run_ids: Iterable[uuid.UUID]) -> None:
    """Wake the event streams of these runs (all streams when there are many)."""
    runs = sorted({str(run_id) for run_id in run_ids})
    notify_after_commit(EVENTS_CHANNEL, ",".join(runs) if len(runs) <= 100 else "*")


def notify_runs_cancelled(run_ids: Iterable[uuid.UUID]) -> None:
    """Tell the workers these runs were cancelled (all runs when there are many)."""
    runs = sorted({str(run_id) for run_id in run_ids})
    if runs:
        notify_after_commit(CANCELLED_CHANNEL, ",".join(runs) if len(runs) <= 100 else "*")


def notify_after_commit(channel: str, payload: str) -> None:
    notes = getattr(_outbox, "notes", None)
    if notes is None:
        raise RuntimeError("notifications are only sent from inside a transaction")
    notes.append((channel, payload))


def reason(exc: Exception, *, detail: bool = False) -> str:
    """What Postgres (or the driver) said about a row it refused (one of BAD_DATA):
    Postgres' message (and with `detail`, its detail), never the context (the batch's
    JSON text)."""
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        more = exc.diag.message_detail if detail else None
        return exc.diag.message_primary + (f" ({more})" if more else "")
    return f"{type(exc).__name__}: {exc}"


class Database:
    """The pool and transactions. Thread-safe: each call borrows a connection. Every
    repository of a Store holds the same one."""

    def __init__(
        self, pool: ConnectionPool, *, retry_s: float = TRANSIENT_RETRY_S,
        call_timeout_s: float | None = None,
    ) -> None:
        """`retry_s`: how long transient database errors are retried before
        DatabaseUnavailable (workers ride out a Postgres restart; the API answers 503
        sooner). `call_timeout_s`: every call ends within this, retries included, even
        when the server hangs (the API's bound on a request's database calls)."""
        self.pool = pool
        self.retry_s = retry_s
        self.call_timeout_s = call_timeout_s
        self.wait_s: float | None = None  # for a pooled connection; None: the pool's timeout
        self.notifier: BackgroundNotifier | None = None  # see notifying_in_background
        self.commit_later = False  # see committing_later

    def bounded(self, seconds: float) -> Self:
        """This database (same pool), for calls that must give up after about `seconds`
        (a worker shutting down must be gone before it is killed): transient errors are
        retried for half of it, and each try waits at most half of it for a connection.
        (A copy: its attributes are settings only, no cache.)"""
        bounded = copy.copy(self)
        bounded.retry_s = bounded.wait_s = seconds / 2
        return bounded

    def notifying_in_background(self, notifier: BackgroundNotifier) -> Self:
        """This database (same pool) handing its notifications to `notifier` once
        committed instead of sending them itself: each call one round trip fewer (the
        broker's sends: see dagq.store.notifier)."""
        sender = copy.copy(self)
        sender.notifier = notifier
        return sender

    def committing_later(self) -> Self:
        """This database (same pool) whose transactions commit without waiting for the
        WAL flush (synchronous_commit off): a bulk action's thousands of one-run
        transactions would each wait ~4 ms for its own flush. Whoever answers for them
        calls Store.flush_commits first: one flush then makes them all durable (the WAL is
        one sequence), so nothing acknowledged can be lost."""
        later = copy.copy(self)
        later.commit_later = True
        return later

    def close(self) -> None:
        self.pool.close()

    @contextlib.contextmanager
    def tx(self, *, one_statement: bool = False) -> Iterator[psycopg.Cursor[Any]]:
        """A transaction on a pooled (autocommit) connection; its notifications go out in
        one statement once it committed.

        `one_statement`: the body runs a single statement, which is a transaction of its
        own in autocommit, so no BEGIN and COMMIT round trips are spent on it (except
        through a transaction pooler, where only a transaction can carry the session's
        limits: dagq.runtime.pooler).
        """
        deadline = getattr(_call, "deadline", None)
        with self.connection(deadline) as conn:
            notes: list[tuple[str, str]] = []
            outer, _outbox.notes = getattr(_outbox, "notes", None), notes
            try:
                bare = one_statement and not needs_transaction(conn)
                tx = contextlib.nullcontext() if bare else conn.transaction()
                with tx, conn.cursor() as cur:
                    if self.commit_later and not bare:
                        cur.execute(queries()["commit_later"])
                    yield cur
            finally:
                _outbox.notes = outer
            if notes and self.notifier is not None:  # committed: a thread tells them
                self.notifier.post(notes)
            elif notes:  # committed: now tell the listeners
                self._notify(conn, list(dict.fromkeys(notes)))

    @contextlib.contextmanager
    def connection(self, deadline: float | None) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; with a deadline (monotonic), the checkout waits only
        until then and the connection is cut off if still in use then. A connection
        that failed for good (lost, or on a server that is read-only: a failover) is
        dropped, not pooled again (dagq.runtime.failover)."""
        if deadline is None:
            with self.pool.connection(timeout=self.wait_s) as conn:
                try:
                    yield conn
                except psycopg.Error as exc:
                    failover.after_error(self.pool, conn, exc)
                    raise
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise DatabaseTimeout("the database did not answer in time")
        with self.pool.connection(timeout=left) as conn, \
                WATCHDOG.bound(conn, deadline - time.monotonic()) as fired:
            try:
                yield conn
            except psycopg.Error as exc:
                failover.after_error(self.pool, conn, exc)
                if fired:
                    raise DatabaseTimeout(
                        f"the database did not answer within {self.call_timeout_s}s") from exc
                raise

    @staticmethod
    def _notify(conn: psycopg.Connection[Any], notes: list[tuple[str, str]]) -> None:
        """Best effort, and never a reason to retry the committed transaction: a lost
        notification costs latency only (consumers poll, event streams re-read)."""
        try:
            conn.execute(queries()["notify"], {"channels": [c for c, _ in notes],
                                               "payloads": [p for _, p in notes]})
        except psycopg.Error as exc:
            log.info("notification lost after commit (%s); listeners will poll", exc)
