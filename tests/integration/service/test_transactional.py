"""dagq.submit_in (issue 33 item 3): the run is written inside the caller's transaction on
the caller's connection: it exists iff that transaction commits, the workers' wake-up
(NOTIFY dagq_queued) arrives at the commit and never after a rollback, refusals raise
before anything is written and leave the caller's transaction usable; sync and async."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus

import dagq
from dagq.errors import Conflict, InvalidRequest, InvalidWorkflow, NotFound, QuotaExceeded
from dagq.service import set_tenant
from dagq.service.workflows import register_workflow
from dagq.store.tx import EVENTS_CHANNEL, QUEUED_CHANNEL

FLOW = {"name": "invoice", "nodes": {"bill": {"executor": "builtin.echo"},
                                     "mail": {"executor": "builtin.noop",
                                              "depends_on": ["bill"]}}}


@pytest.fixture
def listener(db_url: str):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"LISTEN {QUEUED_CHANNEL}")
        conn.execute(f"LISTEN {EVENTS_CHANNEL}")
        yield conn


def heard(listener: psycopg.Connection) -> list[tuple[str, str]]:
    return [(n.channel, n.payload) for n in listener.notifies(timeout=0.3, stop_after=10)]


def run_rows(sql) -> list[dict]:
    return sql.execute("SELECT id, tenant, status, inputs, metadata, event_key FROM dagq.runs"
                       ).fetchall()


def test_the_run_exists_iff_the_transaction_commits(repo, sql, db_url, listener) -> None:
    register_workflow(repo, FLOW)
    with psycopg.connect(db_url) as app:  # the application's connection (no autocommit)
        app.execute("CREATE TABLE invoices (id int PRIMARY KEY)")
        app.commit()
        app.execute("INSERT INTO invoices VALUES (1)")
        result = dagq.submit_in(app, "invoice", inputs={"invoice": 1}, event_key="inv-1",
                                metadata={"invoice": "1"}, tenant="acme")
        assert result.created and result.status == "queued"
        assert run_rows(sql) == []  # not visible before the commit
        assert heard(listener) == []  # nor anyone woken
        app.commit()
    [run] = run_rows(sql)
    assert (run["id"], run["tenant"], run["inputs"]) == (result.run_id, "acme", {"invoice": 1})
    assert run["metadata"] == {"invoice": "1"} and run["event_key"] == "inv-1"
    assert (QUEUED_CHANNEL, "default") in heard(listener)
    assert sql.execute("SELECT count(*) AS n FROM invoices").fetchone()["n"] == 1


def test_a_rollback_leaves_no_run_and_wakes_nobody(repo, sql, db_url, listener) -> None:
    register_workflow(repo, FLOW)
    with psycopg.connect(db_url) as app, app.transaction():
        dagq.submit_in(app, "invoice", inputs={"invoice": 2})  # committed at the block's end
    with psycopg.connect(db_url) as app, pytest.raises(RuntimeError), app.transaction():
        dagq.submit_in(app, "invoice", inputs={"invoice": 3})
        raise RuntimeError("the business write failed")
    assert [r["inputs"] for r in run_rows(sql)] == [{"invoice": 2}]
    heard(listener)  # (the first transaction's wake-ups)
    with psycopg.connect(db_url) as app:
        dagq.submit_in(app, "invoice", inputs={"invoice": 4})
        app.rollback()
    assert [r["inputs"] for r in run_rows(sql)] == [{"invoice": 2}]
    assert heard(listener) == []


def test_refusals_raise_before_writing_and_the_transaction_goes_on(repo, sql, db_url) -> None:
    register_workflow(repo, FLOW)
    set_tenant(repo, "tight", max_queued_runs=1)
    with psycopg.connect(db_url) as app:
        app.execute("CREATE TEMP TABLE notes (n int)")
        for call, error in (
                (lambda: dagq.submit_in(app, "nosuch"), NotFound),
                (lambda: dagq.submit_in(app, "invoice", event_key="dagq.mine"), InvalidRequest),
                (lambda: dagq.submit_in(app, {"name": "x", "nodes": {}}), InvalidWorkflow),
                (lambda: dagq.submit_in(app, "invoice", metadata={"k": [1]}), InvalidRequest),
                (lambda: dagq.submit_in(app, "invoice", priority=10**6), InvalidRequest)):
            with pytest.raises(error):
                call()
            app.execute("INSERT INTO notes VALUES (1)")  # still usable
        first = dagq.submit_in(app, "invoice", inputs={"a": 1}, event_key="k")
        assert dagq.submit_in(app, "invoice", inputs={"a": 1},
                              event_key="k") == first.model_copy(update={"created": False})
        with pytest.raises(Conflict):
            dagq.submit_in(app, "invoice", inputs={"a": 2}, event_key="k")
        dagq.submit_in(app, "invoice", tenant="tight")
        with pytest.raises(QuotaExceeded):  # the tenant's quota counts this transaction's
            dagq.submit_in(app, "invoice", tenant="tight")
        app.commit()
    assert len(run_rows(sql)) == 2


def test_a_connection_outside_a_transaction_is_refused(repo, sql, db_url) -> None:
    register_workflow(repo, FLOW)
    with psycopg.connect(db_url, autocommit=True) as app:
        with pytest.raises(InvalidRequest, match="inside the caller's transaction"):
            dagq.submit_in(app, "invoice")
        with app.transaction():  # an explicit transaction on an autocommit connection
            dagq.submit_in(app, "invoice")
    with pytest.raises(TypeError):
        dagq.submit_in(object(), "invoice")  # type: ignore[call-overload]
    assert len(run_rows(sql)) == 1


def test_async_connections(repo, sql, db_url, listener) -> None:
    register_workflow(repo, FLOW)

    async def go() -> uuid.UUID:
        async with await psycopg.AsyncConnection.connect(db_url) as app:
            kept = await dagq.submit_in(app, "invoice", inputs={"n": 1}, tenant="acme")
            assert run_rows(sql) == []
            await app.commit()
            await dagq.submit_in(app, "invoice", inputs={"n": 2})
            with pytest.raises(NotFound):
                await dagq.submit_in(app, "nosuch")
            await app.rollback()
            async with app.transaction():
                await dagq.submit_in(app, "invoice", inputs={"n": 3})
            return kept.run_id

    kept = asyncio.run(go())
    assert sorted(r["inputs"]["n"] for r in run_rows(sql)) == [1, 3]
    assert kept in {r["id"] for r in run_rows(sql)}
    assert (QUEUED_CHANNEL, "default") in heard(listener)


def test_a_cancelled_async_call_leaves_the_connection_to_the_caller(repo, sql, db_url) -> None:
    """`await submit_in(aconn, ...)` cancelled while its thread waits on a lock (another
    transaction holds the tenant's row): the thread went on using the caller's connection
    after the cancel, and the caller's rollback was refused (psycopg: "Explicit rollback()
    forbidden within a Transaction context", the thread's savepoint still open) or would
    run between its statements. The cancel now waits for the thread; the rollback undoes
    what it wrote."""
    register_workflow(repo, FLOW)
    set_tenant(repo, "acme", max_queued_runs=10)  # admission locks the tenant's row
    blocker = psycopg.connect(db_url)
    blocker.execute("SELECT 1 FROM dagq.tenants WHERE name = 'acme' FOR UPDATE")

    async def go() -> tuple[Any, int]:
        async with await psycopg.AsyncConnection.connect(db_url) as app:
            call = asyncio.ensure_future(dagq.submit_in(app, "invoice", tenant="acme"))
            await asyncio.sleep(0.5)  # the thread waits for the tenant's lock
            call.cancel()
            threading.Timer(0.5, blocker.commit).start()
            with pytest.raises(asyncio.CancelledError):
                await call
            await app.rollback()
            await asyncio.sleep(1.0)  # what a thread left running would send by now
            status = app.info.transaction_status
            await app.execute("SELECT 1")  # the connection still serves its owner
            await app.rollback()
            return status, len(run_rows(sql))

    try:
        status, runs = asyncio.run(go())
    finally:
        blocker.close()
    assert status == TransactionStatus.IDLE
    assert runs == 0
