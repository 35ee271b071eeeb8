"""The read-only trap on one real server (dagq.runtime.failover): a server that turns
read-only under an open pool (what a demoted primary is to its old clients) makes writes
fail with 25006; the store drops those connections, never pools a new one to a
read-only server, and finishes the write once a writable server is there."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import psycopg
import psycopg_pool
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dagq.cli import main
from dagq.config import get_settings
from dagq.runtime.db import open_pool
from dagq.runtime.failover import Verdict, after_error
from dagq.store import Store
from dagq.workers.listener import QueueListener
from tests.harness.failover import Forward
from tests.harness.procs import wait_for

if TYPE_CHECKING:
    from tests.harness.pg import TestServer


@pytest.fixture
def read_only_switch(pg_server: TestServer) -> Iterator[Callable[[bool], None]]:
    """Turn the whole server read-only (on) or back (off) for every session, open ones
    included (a reload), as a demotion does for the clients left on the old primary."""
    if pg_server.shared:  # ALTER SYSTEM would turn every other test process read-only too
        pytest.skip("needs a server of its own (the embedded one of ./scripts/test)")

    def switch(on: bool) -> None:
        with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
            if on:
                conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            else:
                conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
            conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.3)  # the backends take the reload at their next command

    try:
        yield switch
    finally:
        switch(False)


def test_a_write_on_a_server_gone_read_only_is_retried_on_a_writable_one(
        db_url: str, read_only_switch) -> None:
    repo = Store(open_pool(db_url, size=3, name="trap"), retry_s=30)
    try:
        repo.tenants.put_tenant("before", weight=1.0)  # the pool holds open connections
        read_only_switch(True)
        done: list[object] = []
        writer = threading.Thread(target=lambda: done.append(
            _try(lambda: repo.tenants.put_tenant("during", weight=2.0))))
        writer.start()
        time.sleep(2.0)
        assert writer.is_alive(), f"the write ended on a read-only server: {done}"
        read_only_switch(False)  # "the new primary": writable again
        writer.join(20)
        assert done == [None], done
        assert repo.tenants.get_tenant("during").weight == 2.0
        # Every connection the pool holds now is on a writable server.
        with repo.db.pool.connection() as conn:
            assert conn.execute("SHOW transaction_read_only").fetchone() == {
                "transaction_read_only": "off"}
    finally:
        repo.close()


def test_a_pool_never_hands_out_a_connection_to_a_read_only_server(
        db_url: str, read_only_switch) -> None:
    pool = open_pool(db_url, size=2, name="never")
    try:
        read_only_switch(True)
        pool.drain()  # every connection is made again, each on the read-only server
        with pytest.raises(psycopg_pool.PoolTimeout), pool.connection(timeout=2):
            pass
        read_only_switch(False)
        with pool.connection(timeout=10) as conn:
            assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
    finally:
        pool.close()


def _try(call) -> object:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test reports whatever ended it
        return exc
    return None


def test_a_pool_is_back_within_seconds_of_its_server(db_url: str) -> None:
    """psycopg_pool alone backs off 1, 2, 4, 8 s...: after a 10 s outage its pool came
    back up to 5 s after the server did. dagq's pools back off to at most 2 s."""
    server = Forward(db_url)
    # Full (every connection lost and being replaced), as a busy pool is after an
    # outage: a checkout can only wait for the replacements' next attempt.
    pool = open_pool(server.url, size=1, name="outage", timeout_s=30)
    try:
        with pool.connection() as conn:
            conn.execute("SELECT 1")
        server.down()
        with pytest.raises(psycopg.OperationalError), pool.connection() as conn:
            conn.execute("SELECT 1")  # the lost connection is dropped, reconnects begin
        time.sleep(10)
        server.up()
        back = time.monotonic()
        with pool.connection(timeout=30) as conn:
            conn.execute("SELECT 1")
        assert time.monotonic() - back < 2.5
    finally:
        pool.close()
        server.close()


def _multi_host(db_url: str) -> str:
    """`db_url` as a multi-host URL whose first host refuses connections (a dead node)
    and which accepts only a writable server."""
    params = conninfo_to_dict(db_url)
    dead = Forward(db_url)
    dead.down()
    return make_conninfo(
        db_url, host=f"127.0.0.1,{params.get('host') or '/tmp'}",
        port=f"{dead.port},{params.get('port') or 5432}", target_session_attrs="read-write")


def test_a_multi_host_url_works_for_the_pool_listen_and_the_cli(
        db_url: str, monkeypatch, capfd) -> None:
    url = _multi_host(db_url)
    repo = Store(open_pool(url, size=2, name="multi"))
    listener = QueueListener(url)
    try:
        repo.tenants.put_tenant("multi-host", weight=3.0)
        listener.start()
        woken = listener.event("default")
        wait_for(lambda: woken.is_set(), 30, "the listener to LISTEN and poll once")
        woken.clear()
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("NOTIFY dagq_queued, 'default'")
        assert woken.wait(10), "no notification through the multi-host LISTEN connection"
    finally:
        listener.stop()
        repo.close()
    monkeypatch.setenv("DAGQ_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        assert main(["tenants", "list", "--json"]) == 0
    finally:
        get_settings.cache_clear()
    assert "multi-host" in capfd.readouterr().out


def test_a_rollback_error_keeps_the_connection_a_lost_one_drops_it(db_url: str) -> None:
    pool = open_pool(db_url, size=1, name="verdicts")
    try:
        with pool.connection() as conn:
            verdict = after_error(pool, conn, psycopg.errors.SerializationFailure("retry"))
            assert (verdict, conn.closed) == (Verdict.RETRY, False)
            backend = conn.info.backend_pid
        with pool.connection() as conn:  # the same session: it was kept
            assert conn.info.backend_pid == backend
            verdict = after_error(pool, conn, psycopg.errors.AdminShutdown("terminating"))
            assert (verdict, conn.closed) == (Verdict.RECONNECT, True)
        with pool.connection(timeout=10) as conn:  # a new session replaced it
            assert conn.info.backend_pid != backend
    finally:
        pool.close()
