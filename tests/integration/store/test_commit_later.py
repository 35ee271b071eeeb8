"""Store.committing_later: transactions that do not wait for their WAL flush (a bulk
action's), made durable together by Store.flush_commits before the action answers."""

from __future__ import annotations

from dagq.store import Store


def setting(store: Store) -> str:
    with store.db.tx() as cur:
        return str(cur.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"])


def test_only_the_committing_later_store_skips_the_flush(repo: Store) -> None:
    assert setting(repo.committing_later()) == "off"
    assert setting(repo) == "on"  # the same pool's connections: SET LOCAL only
    assert setting(repo.committing_later()) == "off"
    assert setting(repo) == "on"


def test_flush_commits_writes_a_synchronous_commit(repo: Store, db_url: str) -> None:
    import psycopg
    with psycopg.connect(db_url, autocommit=True) as sql:
        before = sql.execute("SELECT pg_current_wal_flush_lsn()").fetchone()[0]
    repo.flush_commits()
    with psycopg.connect(db_url, autocommit=True) as sql:
        after = sql.execute("SELECT pg_current_wal_flush_lsn()").fetchone()[0]
    assert after > before  # its commit record was written and flushed
