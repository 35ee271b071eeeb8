"""Issue 12, fault 3 and the API's bounds: every session dagq opens carries its limits,
a lock or idle timeout is a transient error the repository retries, and a call with a
deadline ends by then even when the server does not answer."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from dagq.config import Settings
from dagq.errors import DatabaseUnavailable
from dagq.runtime.db import SessionLimits, connect, conninfo, open_pool
from dagq.store import Store
from dagq.store.tx import TRANSIENT_ERRORS, transient
from tests.harness.specs import spec

LIMITS = ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")


def shown(conn: psycopg.Connection) -> dict[str, str]:
    return {name: next(iter(conn.execute(f"SHOW {name}").fetchone().values()))  # noqa: S608
            for name in LIMITS}


def test_pools_and_direct_connections_carry_the_settings(db_url: str) -> None:
    settings = Settings(db_statement_timeout_s=42, db_lock_timeout_s=7,
                        db_idle_in_transaction_timeout_s=9, api_db_timeout_s=3)
    pool = open_pool(db_url, size=1, generic_plans=True,
                     limits=SessionLimits.from_settings(settings))
    try:
        with pool.connection() as conn:
            assert shown(conn) == {"statement_timeout": "42s", "lock_timeout": "7s",
                                   "idle_in_transaction_session_timeout": "9s"}
            plan = conn.execute("SHOW plan_cache_mode").fetchone()
            assert plan == {"plan_cache_mode": "force_generic_plan"}
    finally:
        pool.close()
    with connect(db_url, autocommit=True, limits=SessionLimits.for_api(settings)) as conn:
        assert next(iter(conn.execute("SHOW jit").fetchone().values())) == "off"
        assert shown(conn) == {"statement_timeout": "3s", "lock_timeout": "3s",
                               "idle_in_transaction_session_timeout": "9s"}
        params = {o.keyword: o.val for o in conn.pgconn.info}
        assert params[b"connect_timeout"] == b"3"
        assert params[b"tcp_user_timeout"] == b"10000" and params[b"keepalives"] == b"1"


def test_the_urls_own_parameters_win() -> None:
    url = "postgresql://u@h/db?options=-c%20lock_timeout%3D1s&tcp_user_timeout=1234"
    info = conninfo(url, SessionLimits(60, 10, 10, 10, 10))
    assert "tcp_user_timeout=1234" in info
    assert info.index("-c lock_timeout=10000") < info.index("-c lock_timeout=1s")
    unbounded = conninfo("postgresql://u@h/db", SessionLimits(0, 0, 0, 0, 0))
    assert "statement_timeout=0" in unbounded and "keepalives" not in unbounded
    assert "connect_timeout" not in unbounded


def test_every_session_runs_without_jit(db_url: str) -> None:
    """JIT compiling a lease took ~240 ms on a server built with LLVM (PostgreSQL 15 from
    Debian): dagq's sessions turn it off, unless the URL's own options turn it back on."""
    pool = open_pool(db_url, size=1, limits=SessionLimits.for_workers(Settings()))
    try:
        with pool.connection() as conn:
            assert conn.execute("SHOW jit").fetchone() == {"jit": "off"}
    finally:
        pool.close()
    with psycopg.connect(conninfo(db_url), autocommit=True) as conn:
        assert conn.execute("SHOW jit").fetchone() == ("off",)
    url = db_url + ("&" if "?" in db_url else "?") + "options=-c%20jit%3Don"
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        assert conn.execute("SHOW jit").fetchone() == ("on",)


def hold_run(db_url: str, run_id) -> psycopg.Connection:
    holder = psycopg.connect(db_url)
    holder.execute("SELECT 1 FROM dagq.runs WHERE id = %s FOR NO KEY UPDATE", (run_id,))
    return holder


def test_a_lock_timeout_is_retried_until_the_lock_is_free(db_url: str, repo) -> None:
    run_id = repo.submissions.submit_run(
        tenant="t", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
    quick = Store(open_pool(db_url, size=2, limits=SessionLimits(60, 0.2, 10, 10, 10)),
                       retry_s=30)
    holder = hold_run(db_url, run_id)
    try:
        threading.Timer(1.0, holder.rollback).start()  # the holder finishes after ~1 s
        assert quick.runs.cancel_run(run_id, None) == "cancelled"  # after a few lock timeouts
    finally:
        holder.close()
        quick.close()


def test_a_lock_held_past_the_retry_window_is_database_unavailable(db_url: str, repo) -> None:
    run_id = repo.submissions.submit_run(
        tenant="t", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
    quick = Store(open_pool(db_url, size=2, limits=SessionLimits(60, 0.2, 10, 10, 10)),
                       retry_s=1)
    holder = hold_run(db_url, run_id)
    try:
        with pytest.raises(DatabaseUnavailable, match="lock timeout"):
            quick.runs.cancel_run(run_id, None)
    finally:
        holder.close()
        quick.close()
    assert repo.runs.get_run(run_id).status == "queued"  # nothing was written


def test_a_call_with_a_deadline_is_cut_off_even_if_the_server_never_answers(
        db_url: str, repo) -> None:
    """No server-side timeout here (as when the server is paused): the watchdog closes
    the connection at the deadline and the call fails then, with a clear message."""
    run_id = repo.submissions.submit_run(
        tenant="t", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
    pool = open_pool(db_url, size=2, limits=SessionLimits(0, 0, 0, 10, 10))
    bounded = Store(pool, retry_s=1.0, call_timeout_s=1.0)
    holder = hold_run(db_url, run_id)
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="did not answer within 1.0s"):
            bounded.runs.cancel_run(run_id, None)
        took = time.monotonic() - started
        holder.rollback()  # the server answers again: the pool serves fresh connections
        assert bounded.runs.cancel_run(run_id, None) == "cancelled"
    finally:
        holder.close()
        bounded.close()
    assert 0.9 <= took < 5.0


class _Flaky:
    """Its first call holds a transaction open past the idle timeout."""

    def __init__(self, pool) -> None:
        self.pool, self.retry_s, self.errors = pool, 10.0, []

    @transient
    def call(self) -> int:
        try:
            with self.pool.connection() as conn, conn.transaction():
                conn.execute("SELECT 1")
                if not self.errors:
                    time.sleep(1.0)  # frozen inside the transaction
                return conn.execute("SELECT 2 AS n").fetchone()["n"]
        except psycopg.Error as exc:
            self.errors.append(exc)
            raise


def test_a_session_ended_for_idling_in_a_transaction_is_retried(db_url: str) -> None:
    pool = open_pool(db_url, size=2, limits=SessionLimits(60, 10, 0.3, 10, 10))
    try:
        flaky = _Flaky(pool)
        assert flaky.call() == 2
        assert len(flaky.errors) == 1 and isinstance(flaky.errors[0], TRANSIENT_ERRORS)
    finally:
        pool.close()
