"""Heartbeats extend leases without ever waiting on a row another transaction holds."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg

from dagq.store import Store
from tests.harness.drive import complete
from tests.harness.specs import spec


def two_leases(repo: Store):
    repo.submissions.submit_run(tenant="t", spec=spec({"a": {"executor": "builtin.noop"},
                                                       "b": {"executor": "builtin.noop"}}))
    return sorted(repo.leases.lease(worker="w1", queue="default", limit=5, ttl_s=30),
                  key=lambda n: n.id)


def expiry(sql, node_id: int):
    return sql.execute("SELECT lease_expires_at FROM dagq.node_tasks WHERE id = %s",
                       (node_id,)).fetchone()["lease_expires_at"]


def test_a_locked_lease_is_skipped_not_waited_for_nor_lost(repo: Store, sql,
                                                           db_url: str) -> None:
    a, b = two_leases(repo)
    before = expiry(sql, a.id)
    other = psycopg.connect(db_url)  # holds b's row, as a completion being committed does
    pool = ThreadPoolExecutor(1)
    try:
        other.execute("SELECT 1 FROM dagq.node_tasks WHERE id = %s FOR UPDATE", (b.id,))
        beat = pool.submit(repo.leases.heartbeat, worker="w1", node_ids=[a.id, b.id], ttl_s=60)
        result = beat.result(timeout=5)  # a heartbeat waiting for b's lock times out here
    finally:
        other.close()  # releases the lock, so a blocked heartbeat can finish
        pool.shutdown()
    assert result.extended == {a.id}
    assert result.lost == set() and result.stop == set()
    assert expiry(sql, a.id) > before


def test_a_lease_taken_back_or_finished_is_lost(repo: Store, sql) -> None:
    a, b = two_leases(repo)
    complete(repo, a.id, a.version, {})
    sql.execute("UPDATE dagq.node_tasks SET lease_owner = 'w2' WHERE id = %s", (b.id,))
    result = repo.leases.heartbeat(worker="w1", node_ids=[a.id, b.id, 999_999], ttl_s=30)
    assert result.extended == set()
    assert result.lost == {a.id, b.id, 999_999}


def test_a_lease_of_a_cancelled_run_is_told_to_stop(repo: Store) -> None:
    a, b = two_leases(repo)
    repo.runs.cancel_run(a.run_id, "t")
    result = repo.leases.heartbeat(worker="w1", node_ids=[a.id, b.id], ttl_s=30)
    assert result.stop == {a.id, b.id} and result.lost == set()
