"""Issue 29 item 2: dagq through PgBouncer 1.18 in pool_mode=transaction. It used to fail
at the first connection (`unsupported startup parameter: options`) and, with options
ignored, on `prepared statement "_pg3_N" does not exist`. Now the pooler is detected, no
startup options are sent, the session limits hold per transaction (and leak to no other
client), prepared statements are off, and the LISTEN probe says when LISTEN would never
fire."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from dagq.bench.pgbouncer import PgBouncer
from dagq.config import Settings, get_settings
from dagq.errors import DagqError
from dagq.runtime import pooler
from dagq.runtime.bootstrap import database
from dagq.runtime.db import SessionLimits, connect, open_pool
from dagq.runtime.listening import Polling, listen_connection, listen_target, listen_warning
from dagq.store import Store
from tests.harness.drive import complete
from tests.harness.pgbouncer import pgbouncer
from tests.harness.specs import diamond

SHORT = SessionLimits(statement_timeout_s=0.2, lock_timeout_s=0.2,
                      idle_in_transaction_timeout_s=5, connect_timeout_s=5,
                      tcp_user_timeout_s=5)


@pytest.fixture
def bouncer(db_url: str) -> Iterator[PgBouncer]:
    with pgbouncer(db_url, pool_size=4) as running:
        yield running


def test_a_pooler_is_detected_and_a_direct_server_is_not(db_url: str,
                                                         bouncer: PgBouncer) -> None:
    through = bouncer.url(db_url)
    assert pooler.detect(db_url) == pooler.Route(pooled=False, prepared=True)
    assert pooler.detect(through) == pooler.Route(pooled=True, prepared=False)
    pooler._routes.pop(through)  # noqa: SLF001  (detect again with the setting)
    forced = pooler.detect(through, Settings(prepared_statements="on"))
    assert forced == pooler.Route(pooled=True, prepared=True)
    pooler._routes.pop(through)  # noqa: SLF001


def test_runs_go_through_pgbouncer_from_submit_to_success(db_url: str,
                                                          bouncer: PgBouncer) -> None:
    """Many short transactions on 2 client connections over 4 server sessions that
    other clients use in between: statements prepared on one session would fail on the
    next (the 5-of-20 runs seen from outside)."""
    store = Store(open_pool(bouncer.url(db_url), size=2, name="through-pgbouncer"))
    others = [psycopg.connect(bouncer.url(db_url), autocommit=True, prepare_threshold=None)
              for _ in range(2)]
    try:
        runs = [store.submissions.submit_run(tenant="t", spec=diamond(), inputs={"i": i})
                for i in range(10)]
        for i in range(100):  # other clients hold server sessions between the steps
            others[i % 2].execute("BEGIN")
            others[i % 2].execute("SELECT 1")
            others[(i + 1) % 2].execute("COMMIT")
            leased = store.leases.lease(worker="w", queue="default", limit=3, ttl_s=30)
            if not leased:
                break
            for node in leased:
                complete(store, node.id, node.version, {"key": node.node_key})
        assert {store.runs.get_run(r.run_id).status for r in runs} == {"succeeded"}
    finally:
        for conn in others:
            conn.rollback()
            conn.close()
        store.close()


def test_limits_hold_per_transaction_and_leak_to_no_other_client(
        db_url: str, bouncer: PgBouncer) -> None:
    through = bouncer.url(db_url)
    pool = open_pool(through, size=1, limits=SHORT)
    store = Store(pool)
    try:
        with store.db.tx(one_statement=True) as cur, \
                pytest.raises(psycopg.errors.QueryCanceled):
            cur.execute("SELECT pg_sleep(2)")
        with store.db.tx() as cur, pytest.raises(psycopg.errors.QueryCanceled):
            cur.execute("SELECT pg_sleep(2)")
        with store.db.tx() as cur:
            settings = cur.execute("SELECT current_setting('lock_timeout') AS lock, "
                                   "current_setting('jit') AS jit").fetchone()
        assert settings == {"lock": "200ms", "jit": "off"}
    finally:
        store.close()
    # Another client of the same pooler, likely on the same server session: the limits
    # were SET LOCAL, so they ended with their transactions.
    with psycopg.connect(through, autocommit=True) as other:
        assert other.execute("SHOW lock_timeout").fetchone() == ("0",)


def test_no_statement_is_prepared_on_one_server_session_and_run_on_another(
        db_url: str, bouncer: PgBouncer) -> None:
    through = bouncer.url(db_url)
    with connect(through, autocommit=True) as conn, \
            psycopg.connect(through, autocommit=True) as holder:
        assert conn.prepare_threshold is None
        conn.execute("SELECT %s::int", (1,))
        # The server session conn just used is now held by another client's
        # transaction: conn's next statement runs on another session.
        holder.execute("BEGIN")
        holder.execute("SELECT pg_backend_pid()")
        for i in range(5):
            assert conn.execute("SELECT %s::int AS i", (i,)).fetchone() == {"i": i}
        holder.execute("COMMIT")


def test_the_listen_probe_warns_only_through_a_transaction_pooler(
        db_url: str, bouncer: PgBouncer) -> None:
    through = bouncer.url(db_url)
    warning = listen_warning(through, Settings())
    assert warning is not None and "DAGQ_LISTEN_URL" in warning and "\n" not in warning
    assert listen_warning(through, Settings(listen_url=db_url)) is None  # direct: fine
    assert listen_warning(through, Settings(listen="off")) is None  # nothing listens
    with pgbouncer(db_url, pool_mode="session") as session_mode:
        session_url = session_mode.url(db_url)
        assert listen_warning(through, Settings(listen_url=session_url)) is None


def test_listen_goes_to_the_listen_url_and_nowhere_through_a_transaction_pooler(
        db_url: str, bouncer: PgBouncer) -> None:
    through = bouncer.url(db_url)
    assert listen_target(db_url, Settings()) == db_url
    assert listen_target(through, Settings(listen_url=db_url)) == db_url
    assert listen_target(through, Settings(listen="off", listen_url=db_url)) is None
    # It would never fire, and would leave LISTEN registrations on pooled sessions.
    assert listen_target(through, Settings()) is None


def test_migrations_refuse_a_transaction_pooler_and_use_a_direct_listen_url(
        db_url: str, bouncer: PgBouncer) -> None:
    """Their session advisory lock would stay held on a pooled server session."""
    through = bouncer.url(db_url)
    with pytest.raises(DagqError, match="migrations need a direct connection"), \
            database(Settings(database_url=through), migrate=True):
        pass
    with database(Settings(database_url=through, listen_url=db_url), migrate=True) as db:
        assert db.applied == [] and db.url == through  # migrated (current) directly


def test_listen_off_listens_to_nothing_and_waits_out_the_timeout(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Dramatiq results and rate-limit backends' wait: with DAGQ_LISTEN=off no
    connection is opened and a wait for a notification is the poll interval."""
    monkeypatch.setenv("DAGQ_LISTEN", "off")
    get_settings.cache_clear()
    try:
        with listen_connection(db_url) as conn:
            assert isinstance(conn, Polling)
            conn.execute("LISTEN anything")
            started = time.monotonic()
            assert list(conn.notifies(timeout=0.2)) == []
            assert time.monotonic() - started >= 0.2
        monkeypatch.setenv("DAGQ_LISTEN", "on")
        get_settings.cache_clear()
        with listen_connection(db_url) as conn, psycopg.connect(db_url,
                                                                 autocommit=True) as other:
            assert not isinstance(conn, Polling)
            conn.execute("LISTEN dagq_probe_test")
            other.execute("NOTIFY dagq_probe_test, 'x'")
            assert [n.payload for n in conn.notifies(timeout=5, stop_after=1)] == ["x"]
    finally:
        get_settings.cache_clear()
