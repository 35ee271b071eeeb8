"""Running behind a connection pooler (PgBouncer in pool_mode=transaction, the usual
production set-up when many hosts share one Postgres).

A transaction pooler hands a server session to a client for one transaction only, so
nothing may rely on session state across transactions:
- startup `options` (dagq's session limits): PgBouncer refuses them (`unsupported
  startup parameter: options`) or, told to ignore them, drops them. Through a pooler
  dagq sends none and sets its limits with SET LOCAL at the start of every transaction
  instead (`PooledConnection`); a single autocommit statement becomes a transaction so
  that it is bounded too.
- named prepared statements (psycopg's `_pg3_N`) live in one server session: the next
  transaction may run on another, where they do not exist. DAGQ_PREPARED_STATEMENTS
  (auto: off through a pooler) decides.
- LISTEN registers a server session, which the pooler gives to other clients: it never
  fires. The LISTEN connections use DAGQ_LISTEN_URL (a direct or session-mode URL), or
  none with DAGQ_LISTEN=off (dagq.runtime.listening, with the start-up probe).

A pooler is recognised by what it does to startup options (`detect`): a server that
does not see the probe option it was sent is not Postgres itself. This covers PgBouncer
in every mode (it handles no `options`); a pooler that passes options through is taken
for a direct connection: set DAGQ_PREPARED_STATEMENTS=off for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dagq.config import Settings, get_settings

log = logging.getLogger("dagq.db")

PROBE_SETTING = "dagq.pooler_probe"
# PgBouncer's answer to a startup parameter it does not handle.
REFUSED_OPTIONS = "unsupported startup parameter"


@dataclasses.dataclass(frozen=True)
class Route:
    """How the server at a URL is reached. `pooled`: through a pooler (startup options
    do not reach the server); `prepared`: named prepared statements may be used."""

    pooled: bool
    prepared: bool


DIRECT = Route(pooled=False, prepared=True)
_routes: dict[str, Route] = {}
_routes_lock = threading.Lock()


def route(url: str) -> Route:
    """What `detect` found for `url` (DIRECT when it was never detected: tests' and
    tools' URLs that are only formatted, never opened)."""
    return _routes.get(url, DIRECT)


def detect(url: str, settings: Settings | None = None, *, connect_timeout_s: int = 10) -> Route:
    """Probe `url` once per process (cached): connect with a startup option and see
    whether the server got it. A server that cannot be reached is not cached (DIRECT is
    returned): the caller's own connection then fails with the real reason."""
    with _routes_lock:
        known = _routes.get(url)
    if known is not None:
        return known
    mode = (settings or get_settings()).prepared_statements
    try:
        pooled = not _options_reach_server(url, connect_timeout_s)
    except psycopg.Error:
        return DIRECT
    found = Route(pooled=pooled, prepared={"on": True, "off": False}.get(mode, not pooled))
    with _routes_lock:
        _routes[url] = found
    if pooled:
        log.info("the database is reached through a connection pooler: session limits "
                 "are set per transaction; prepared statements %s",
                 "on" if found.prepared else "off")
    return found


def _options_reach_server(url: str, connect_timeout_s: int) -> bool:
    params: dict[str, Any] = dict(conninfo_to_dict(url))
    ours = f"-c {PROBE_SETTING}=on"
    params["options"] = f"{params['options']} {ours}" if params.get("options") else ours
    params.setdefault("connect_timeout", str(max(2, connect_timeout_s)))
    try:
        with psycopg.connect(make_conninfo("", **params), autocommit=True) as conn:
            row = conn.execute("SELECT current_setting(%s, true)", (PROBE_SETTING,)).fetchone()
    except psycopg.OperationalError as exc:
        if REFUSED_OPTIONS in str(exc):
            return False
        raise
    return bool(row and row[0] == "on")


def set_local_statement(settings: list[tuple[str, str]]) -> bytes:
    """One statement setting each (name, value) for the current transaction only (names
    and values as SQL literals, composed: never formatted into the text)."""
    if not settings:
        return b""
    calls = sql.SQL(", ").join(
        sql.SQL("set_config({}, {}, true)").format(sql.Literal(name), sql.Literal(value))
        for name, value in settings)
    return sql.SQL("SELECT {}").format(calls).as_bytes(None)


class PooledConnection(psycopg.Connection[Any]):
    """A connection through a transaction pooler: each outermost transaction starts with
    `tx_settings` (SET LOCAL of the session limits), since the server session under
    the next transaction may be another one, which never saw them."""

    tx_settings: bytes = b""

    @contextlib.contextmanager
    def transaction(self, savepoint_name: str | None = None,
                    force_rollback: bool = False) -> Iterator[psycopg.Transaction]:
        outermost = self.info.transaction_status == pq.TransactionStatus.IDLE
        with super().transaction(savepoint_name, force_rollback) as tx:
            if outermost and self.tx_settings:
                self.execute(self.tx_settings, prepare=False)
            yield tx


def needs_transaction(conn: psycopg.Connection[Any]) -> bool:
    """Whether even a single statement must run in a transaction (to be bounded)."""
    return isinstance(conn, PooledConnection) and bool(conn.tx_settings)
