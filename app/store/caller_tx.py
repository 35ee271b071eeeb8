"""The store on the application's own connection, inside its transaction
(dagq.submit_in): `CallerDatabase` is a `Database` whose every `tx()` is a savepoint of
the caller's open transaction on the caller's connection. Nothing here commits: what the
store writes exists if and only if the caller commits, and its notifications (the queues'
and event streams' wake-ups) are sent with NOTIFY inside that transaction, which
Postgres delivers at its commit and drops at its rollback.

A Store over one: `caller_store(db)`.

`AsyncCallerDatabase` does the same on a psycopg AsyncConnection: the store's code is
synchronous, so it runs in a thread and each statement is sent back to the caller's
event loop (which only awaits that thread meanwhile), through `_BridgedCursor`.

No retries (retry_s 0): a transient error inside the caller's transaction has aborted
it; only the caller can start again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, cast

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from dagq.errors import InvalidRequest
from dagq.runtime.sqlfiles import queries
from dagq.store import Store
from dagq.store.tx import Database, _outbox

NEEDS_TRANSACTION = ("submit_in writes inside the caller's transaction: open one first "
                     "(`with conn.transaction():`, or a connection without autocommit)")


class CallerDatabase:
    """What the repositories use of a `Database` (tx, connection, the retry settings),
    over one caller's connection (see the module docstring). Not a subclass: nothing of
    the pool's applies."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        # No pool: every call runs on `conn`. (Database's other settings: no bound, no
        # retry, notifications sent in the transaction.)
        self.conn = conn
        self.retry_s, self.call_timeout_s, self.wait_s = 0.0, None, None
        self.notifier, self.commit_later = None, False

    def close(self) -> None:  # the caller's connection is the caller's to close
        pass

    def begin(self) -> None:
        """Make sure a transaction of the caller's is open (a non-autocommit connection
        opens one at its first statement), else refuse: a savepoint outside one would be
        a transaction of dagq's own, committed at its end."""
        status = self.conn.info.transaction_status
        if status == TransactionStatus.INERROR:
            raise InvalidRequest("the caller's transaction has already failed: roll it back")
        if status == TransactionStatus.IDLE:
            if self.conn.autocommit:
                raise InvalidRequest(NEEDS_TRANSACTION)
            self.conn.execute(queries()["ping"])  # opens the caller's transaction

    @contextlib.contextmanager
    def tx(self, *, one_statement: bool = False) -> Iterator[Any]:
        """A savepoint in the caller's transaction; its notifications go out inside it."""
        notes: list[tuple[str, str]] = []
        outer, _outbox.notes = getattr(_outbox, "notes", None), notes
        try:
            with self.conn.transaction(), self.conn.cursor(row_factory=dict_row) as cur:
                yield cur
                if notes:
                    unique = list(dict.fromkeys(notes))
                    cur.execute(queries()["notify"], {"channels": [c for c, _ in unique],
                                                      "payloads": [p for _, p in unique]})
        finally:
            _outbox.notes = outer

    @contextlib.contextmanager
    def connection(self, deadline: float | None) -> Iterator[psycopg.Connection[Any]]:
        yield self.conn


class _BridgedCursor:
    """A synchronous cursor (what the store calls: execute, then fetchone, fetchall or
    rowcount) over an async one, run on the caller's event loop."""

    def __init__(self, cur: psycopg.AsyncCursor[Any], loop: asyncio.AbstractEventLoop) -> None:
        self._cur, self._loop = cur, loop

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> _BridgedCursor:
        self._run(self._cur.execute(query, params, **kwargs))
        return self

    def fetchone(self) -> Any:
        return self._run(self._cur.fetchone())

    def fetchall(self) -> list[Any]:
        return self._run(self._cur.fetchall())

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount


class AsyncCallerDatabase:
    """CallerDatabase's interface on an AsyncConnection: used from a thread while the
    loop waits."""

    def __init__(self, conn: psycopg.AsyncConnection[Any],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.aconn, self.loop = conn, loop
        self.retry_s, self.call_timeout_s, self.wait_s = 0.0, None, None
        self.notifier, self.commit_later = None, False

    def close(self) -> None:  # the caller's connection is the caller's to close
        pass

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def begin(self) -> None:
        status = self.aconn.info.transaction_status
        if status == TransactionStatus.INERROR:
            raise InvalidRequest("the caller's transaction has already failed: roll it back")
        if status == TransactionStatus.IDLE:
            if self.aconn.autocommit:
                raise InvalidRequest(NEEDS_TRANSACTION)
            self._run(self.aconn.execute(queries()["ping"]))

    @contextlib.contextmanager
    def tx(self, *, one_statement: bool = False) -> Iterator[Any]:
        notes: list[tuple[str, str]] = []
        outer, _outbox.notes = getattr(_outbox, "notes", None), notes
        savepoint = self.aconn.transaction()
        cursor = self.aconn.cursor(row_factory=dict_row)
        self._run(savepoint.__aenter__())
        try:
            cur = _BridgedCursor(cursor, self.loop)
            yield cur
            if notes:
                unique = list(dict.fromkeys(notes))
                cur.execute(queries()["notify"], {"channels": [c for c, _ in unique],
                                                  "payloads": [p for _, p in unique]})
        except BaseException as exc:
            self._run(cursor.close())
            if not self._run(savepoint.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            self._run(cursor.close())
            self._run(savepoint.__aexit__(None, None, None))
        finally:
            _outbox.notes = outer

    @contextlib.contextmanager
    def connection(self, deadline: float | None) -> Iterator[psycopg.Connection[Any]]:
        raise NotImplementedError("an async caller's connection is used through tx() only")
        yield  # pragma: no cover


def caller_store(db: CallerDatabase | AsyncCallerDatabase) -> Store:
    """A Store whose every transaction is a savepoint of the caller's (a fresh one per
    call: its caches would outlive the transaction)."""
    return Store(db=cast(Database, db))
