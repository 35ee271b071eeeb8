"""Submitting a run inside the application's own transaction (issue 33 item 3):
`dagq.submit_in(conn, workflow, inputs=..., event_key=..., metadata=..., tenant=...)`.

The run is written on `conn` (a psycopg Connection or AsyncConnection of the
application, on the same database as dagq) inside the transaction open there, by the same
code as `POST /v1/runs` (executor defaults, queues, metadata, concurrency keys, the
tenant's quotas): it exists if and only if that transaction commits, and the workers are
woken by NOTIFYs sent inside it (delivered at the commit, dropped at a rollback). Nothing
is committed here. A request dagq refuses raises a dagq.errors error (InvalidRequest,
InvalidWorkflow, NotFound, Conflict, QuotaExceeded) before anything is written; every
statement runs in a savepoint, so the caller's transaction stays usable after one.

`expand_submit_requests` is the sweeper's pass that turns the requests of the SQL
function dagq.submit (migration 033) into runs, through the same path.

A sync connection's call returns the SubmitResult; an async connection's returns an
awaitable of it (`await dagq.submit_in(aconn, ...)`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime
from typing import Any, overload

import psycopg

from dagq.errors import DagqError, DatabaseUnavailable
from dagq.models import SubmitResult
from dagq.service.submissions import submit
from dagq.store import Store
from dagq.store.caller_tx import AsyncCallerDatabase, CallerDatabase, caller_store

DEFAULT_TENANT = "default"  # the CLI's default tenant (dagq submit)


@overload
def submit_in(conn: psycopg.Connection[Any], workflow: Any, *, inputs: Any = ...,
              event_key: str | None = ..., metadata: Any = ..., tenant: str = ...,
              version: int | None = ..., priority: int = ...,
              deadline_s: float | None = ...) -> SubmitResult: ...


@overload
def submit_in(conn: psycopg.AsyncConnection[Any], workflow: Any, *, inputs: Any = ...,
              event_key: str | None = ..., metadata: Any = ..., tenant: str = ...,
              version: int | None = ..., priority: int = ...,
              deadline_s: float | None = ...) -> Awaitable[SubmitResult]: ...


def submit_in(conn: Any, workflow: Any, *, inputs: Any = None, event_key: str | None = None,
              metadata: Any = None, tenant: str = DEFAULT_TENANT, version: int | None = None,
              priority: int = 0, deadline_s: float | None = None,
              ) -> SubmitResult | Awaitable[SubmitResult]:
    """Submit one run of `workflow` (a registered name or an inline spec) in `conn`'s
    open transaction; see the module docstring."""
    args = {"tenant": tenant, "workflow": workflow, "version": version, "inputs": inputs,
            "event_key": event_key, "priority": priority, "deadline_s": deadline_s,
            "metadata": metadata}
    if isinstance(conn, psycopg.AsyncConnection):
        return _submit_async(conn, args)
    if not isinstance(conn, psycopg.Connection):
        raise TypeError(f"submit_in needs a psycopg Connection or AsyncConnection, not "
                        f"{type(conn).__name__}")
    db = CallerDatabase(conn)
    db.begin()
    return submit(caller_store(db), **args)


async def _submit_async(conn: psycopg.AsyncConnection[Any],
                        args: dict[str, Any]) -> SubmitResult:
    db = AsyncCallerDatabase(conn, asyncio.get_running_loop())

    def run() -> SubmitResult:
        db.begin()
        return submit(caller_store(db), **args)

    # The store is synchronous: it runs in a thread, each statement sent back to this
    # loop, which has nothing else to do on `conn` meanwhile (the caller awaits us).
    work = asyncio.ensure_future(asyncio.to_thread(run))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        # A cancel does not stop the thread: it would go on using `conn` while the caller
        # rolls back (refused while the thread's savepoint is open, else run between its
        # statements). The cancel waits for it; the caller's rollback then undoes it.
        await _until_done(work)
        raise


async def _until_done(work: asyncio.Future[Any]) -> None:
    while not work.done():
        try:
            await asyncio.wait({work})
        except asyncio.CancelledError:  # cancelled again: still the thread's to finish
            continue
    if not work.cancelled():
        work.exception()  # retrieved: the caller sees its cancel, not this


SQL_SUBMITS_BATCH = 100


def expand_submit_requests(repo: Store, now: datetime | None = None) -> dict[str, int]:
    """The due requests of dagq.submit, each made into its run (the request's id is the
    run's) in one transaction with its deletion; refusals retried or failed."""
    return repo.submit_requests.expand_due(_expand, limit=SQL_SUBMITS_BATCH, now=now)


def _expand(conn: psycopg.Connection[Any], row: dict[str, Any]) -> DagqError | None:
    try:
        submit(caller_store(CallerDatabase(conn)), tenant=row["tenant"],
               workflow=row["workflow"], inputs=row["inputs"], event_key=row["event_key"],
               metadata=row["metadata"], run_id=row["id"])
    except DatabaseUnavailable:
        raise  # the whole pass is retried, nothing recorded
    except DagqError as exc:  # (its savepoint rolled back: nothing of the run written)
        return exc
    return None
