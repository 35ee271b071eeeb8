"""Retiring event partitions through a transaction pooler (PgBouncer, pool_mode=
transaction) leaves no lock behind. The one-retirer-at-a-time lock used to be a session
advisory lock taken and released by separate autocommit statements: through the pooler
those can run on different server sessions, so the release missed and the lock stayed
on a server session the pooler keeps (and hands to other clients): no sweeper could
retire partitions again while it lived."""

from __future__ import annotations

import psycopg
import pytest

from dagq.runtime import pooler
from dagq.runtime.db import open_pool
from dagq.store import Store
from dagq.store.partitions import PartitionRepo
from tests.harness.pgbouncer import pgbouncer

WEEK_S = 7 * 86_400
HELD = ("SELECT count(*) AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
        "WHERE l.locktype = 'advisory' AND d.datname = current_database()")


def test_retiring_through_pgbouncer_leaves_no_lock_held(db_url: str, sql,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    with pgbouncer(db_url, pool_size=3) as bouncer:
        through = bouncer.url(db_url)
        store = Store(open_pool(through, size=1, name="sweeper-through-pgbouncer"))
        other = psycopg.connect(through, prepare_threshold=None)
        try:
            # While the retirement runs, another client of the pooler starts a
            # transaction: the pooler gives it the server session it gave the
            # retirement last (the lock's), so the retirement's next statement (its
            # unlock, with the session lock) runs on the other session.
            def meanwhile(*_: object) -> None:
                other.execute("SELECT 1")

            monkeypatch.setattr(PartitionRepo, "_log_held_back", staticmethod(meanwhile))
            assert store.partitions.retire_event_partitions(retention_s=WEEK_S) == []
            held = sql.execute(HELD).fetchone()["n"]
            other.rollback()
            assert held == 0
            assert sql.execute(HELD).fetchone()["n"] == 0
            # ...and the next retirement (another sweeper) is not locked out.
            monkeypatch.undo()
            store.partitions.retire_event_partitions(retention_s=WEEK_S)
            assert sql.execute(HELD).fetchone()["n"] == 0
        finally:
            other.close()
            store.close()
            pooler._routes.pop(through, None)  # noqa: SLF001
