"""Riding out a failover: which database errors mean "this connection is gone or on the
wrong server, drop it and do the unit of work again", which mean "just do it again",
and the checks that never hand out a pooled connection to a server in recovery.

After an HA manager (Patroni, pg_auto_failover, a managed service) promotes a standby,
a client can be left holding connections to the demoted node: reads pass, every write
fails with SQLSTATE 25006 until the process restarts (the "read-only trap"). dagq
connects with libpq's `target_session_attrs=read-write` when the URL asks for it, but a
connection made through a proxy, a DNS name or a virtual IP can still land on (or stay
on) a read-only server; the classifier and the pool checks here get it off it.

One place decides (`classify`); the store's retry (dagq.store.tx) follows its verdict.
The LISTEN loops (dagq.api.hub, dagq.workers.listener) hold one connection each and
make a new one after any database error, spaced by `reconnect_delays`; LISTEN on a
standby fails by itself (0A000 "... during recovery"), so they never stay on one.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg_pool
from psycopg.pq import ConnStatus
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool
from psycopg_pool.base import AttemptWithBackoff

from dagq.backoff import backoff_delay

log = logging.getLogger("dagq.db")


class Verdict(enum.Enum):
    RECONNECT = "reconnect"  # drop the connection, do the unit of work again elsewhere
    RETRY = "retry"  # do it again (the connection is fine)
    FAIL = "fail"  # not a database condition that time mends


class ReadOnlyServer(psycopg.OperationalError):
    """The server a connection reached is in recovery or read-only (not the primary)."""


# The server is going away or gone: admin_shutdown (a fast stop, a switchover's
# demotion, pg_terminate_backend), crash_shutdown (another backend crashed), and
# cannot_connect_now (starting up, or shutting down).
_GONE = frozenset({"57P01", "57P02", "57P03"})
# The session's transaction cannot write on this server: a demoted primary, a standby.
_READ_ONLY = "25006"
# Ordered to roll back and try again; the connection itself is healthy.
_ROLLBACK = frozenset({"40001", "40P01"})
# The server ended the session (its transaction sat idle too long: a frozen client).
_SESSION_ENDED = "25P03"


def classify(exc: BaseException) -> Verdict:
    """What to do about `exc`, raised by a unit of work on a database connection."""
    if not isinstance(exc, psycopg.Error):
        return Verdict.FAIL
    state = exc.sqlstate
    if wrong_server(exc) or state in _GONE or state == _SESSION_ENDED:
        return Verdict.RECONNECT
    if state is not None and state.startswith("08"):  # connection exception class
        return Verdict.RECONNECT
    if state in _ROLLBACK:
        return Verdict.RETRY
    if isinstance(exc, psycopg.OperationalError):
        # No SQLSTATE: libpq lost the connection (or never had one). With one: lock
        # and statement timeouts, too many connections, a pool timeout: worth a retry
        # on the connection as it is (a broken one the pool discards by itself).
        return Verdict.RECONNECT if state is None and _lost(exc) else Verdict.RETRY
    return Verdict.FAIL


def retryable(exc: BaseException) -> bool:
    return classify(exc) is not Verdict.FAIL


def wrong_server(exc: BaseException) -> bool:
    """The error says the server is read-only or in recovery: every other idle
    connection of the pool may be on it too."""
    if isinstance(exc, ReadOnlyServer):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    if exc.sqlstate == _READ_ONLY:
        return True
    # 0A000 "cannot execute LISTEN during recovery" (and other commands a standby
    # refuses); 0A000 for anything else is a real feature error.
    message = (exc.diag.message_primary or str(exc)) if exc.sqlstate == "0A000" else ""
    return "during recovery" in message


def _lost(exc: psycopg.OperationalError) -> bool:
    # The pool's errors are OperationalErrors too: no connection was held, none to drop.
    return not isinstance(exc, psycopg_pool.PoolTimeout | psycopg_pool.PoolClosed
                          | psycopg_pool.TooManyRequests)


def after_error(pool: ConnectionPool | None, conn: psycopg.Connection[Any],
                exc: BaseException) -> Verdict:
    """Act on a failed unit of work: a connection to drop is closed, so the pool
    discards it when it comes back instead of handing it out again; on a read-only
    server, the pool's idle connections are replaced too (drained: those in use are
    closed when returned) since they were most likely opened to the same server."""
    verdict = classify(exc)
    if verdict is Verdict.RECONNECT and not conn.closed:
        conn.close()
    if pool is not None and wrong_server(exc):
        log.warning("connection to a read-only server (%s); reconnecting the pool %s",
                    exc.sqlstate or type(exc).__name__, pool.name)
        pool.drain()
    return verdict


# ===== checks of pooled connections ===================================================


def reported_read_only(conn: psycopg.Connection[Any]) -> bool | None:
    """Whether the server said (PostgreSQL 14+ reports both settings to the client on
    their own, so this costs no round trip) that it is a hot standby or read-only by
    default; None when it reports neither (older servers)."""
    standby = conn.pgconn.parameter_status(b"in_hot_standby")
    read_only = conn.pgconn.parameter_status(b"default_transaction_read_only")
    if standby is None and read_only is None:
        return None
    return b"on" in (standby, read_only)


def verify_writable(conn: psycopg.Connection[Any]) -> None:
    """On a new pooled connection: raise ReadOnlyServer if its server cannot take
    writes (the pool then tries again, backing off). One query on servers older than
    14 only."""
    read_only = reported_read_only(conn)
    if read_only is None:
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute("SELECT pg_is_in_recovery() OR "
                        "current_setting('transaction_read_only')::bool")
            row = cur.fetchone()
        read_only = bool(row and row[0])
    if read_only:
        raise ReadOnlyServer(f"{_where(conn)} is read-only or in recovery")


def check_checkout(conn: psycopg.Connection[Any]) -> None:
    """The pool's check at every checkout, without a round trip: a connection that is
    closed, broken, or whose server has since said it is read-only is closed (so the
    pool discards it, not re-pools it) and another one is taken."""
    if conn.closed or conn.pgconn.status != ConnStatus.OK:
        conn.close()
        raise psycopg.OperationalError("the pooled connection was lost")
    if reported_read_only(conn):
        conn.close()
        raise ReadOnlyServer(f"{_where(conn)} became read-only")


def _where(conn: psycopg.Connection[Any]) -> str:
    try:
        return f"the server at {conn.info.host}:{conn.info.port}"
    except psycopg.Error:
        return "the server"


# ===== reconnecting a LISTEN connection ===============================================

RECONNECT_INITIAL_S = 0.1
RECONNECT_MAX_S = 5.0


def reconnect_delays(rng: random.Random | None = None) -> Iterator[float]:
    """Delays between attempts to reconnect a LISTEN connection: doubling from 0.1 s
    to 5 s, each drawn from [base/2, base], so that every process that lost its
    connection in the same failover does not come back in the same instant."""
    attempt = 0
    while True:
        attempt += 1
        yield backoff_delay(attempt, RECONNECT_INITIAL_S, RECONNECT_MAX_S, rng)


# ===== reconnecting a pool ============================================================

POOL_RECONNECT_INITIAL_S = 0.25
POOL_RECONNECT_MAX_S = 2.0


class ReconnectBackoff(AttemptWithBackoff):
    """psycopg_pool's delays between attempts to replace a lost connection double
    without a cap until reconnect_timeout (1, 2, 4 ... 32 s): a worker whose server was
    away for 40 s could wait 20 s more once it was back. Here they double from 0.25 s
    to at most 2 s, each drawn from [base/2, base] so the pools of many processes do
    not knock in step; at most max_size attempts per pool run at once (one per
    missing connection), so a failover never brings a connection storm."""

    def __init__(self, *, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.failures = 0

    def update_delay(self, now: float) -> None:
        if self.failures == 0:
            self.give_up_at = now + self.timeout
        self.failures += 1
        self.delay = backoff_delay(self.failures, POOL_RECONNECT_INITIAL_S,
                                   POOL_RECONNECT_MAX_S)
        if self.delay + now > self.give_up_at:
            self.delay = max(0.0, self.give_up_at - now)


class FailoverPool(ConnectionPool):
    """A ConnectionPool whose reconnection attempts back off as ReconnectBackoff says."""

    def _add_connection(self, attempt: AttemptWithBackoff | None,
                        growing: bool = False) -> None:
        super()._add_connection(attempt or ReconnectBackoff(timeout=self.reconnect_timeout),
                                growing)
