"""What a completion transaction must not do: take its run's lock before the node rows it
locks later (every transaction locks node rows first; otherwise a completion deadlocks
with a failure or a cancel of the same run), or be redone once it has committed."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg

from dagq.store import Store
from tests.harness.drive import complete
from tests.harness.specs import spec


def wait_until_blocked(sql, deadline_s: float = 10.0) -> None:
    """Until some other session waits for a lock (the transaction under test)."""
    deadline = time.monotonic() + deadline_s
    while not sql.execute(
        "SELECT count(*) AS n FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()").fetchone()["n"]:
        assert time.monotonic() < deadline, "the completion never waited for the lock"
        time.sleep(0.01)


def test_a_completion_takes_its_run_lock_after_the_dependents_it_releases(
        repo: Store, sql, db_url: str) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=spec({
        "a": {"executor": "builtin.noop"}, "b": {"executor": "builtin.noop"},
        "d": {"executor": "builtin.noop", "depends_on": ["a", "b"]}})).run_id
    a = next(n for n in repo.leases.lease(worker="w", queue="default", limit=5, ttl_s=30)
             if n.node_key == "a")
    holder = psycopg.connect(db_url)  # holds the join row, as a failure of b would
    pool = ThreadPoolExecutor(1)
    try:
        holder.execute("SELECT 1 FROM dagq.node_tasks WHERE run_id = %s AND node_key = 'd' "
                       "FOR UPDATE", (run_id,))
        completion = pool.submit(complete, repo, a.id, a.version, {})
        wait_until_blocked(sql)
        # The completion waits for d; it must not be holding the run meanwhile.
        with psycopg.connect(db_url) as probe:
            probe.execute("SELECT 1 FROM dagq.runs WHERE id = %s FOR NO KEY UPDATE NOWAIT",
                          (run_id,))
    finally:
        holder.close()
        pool.shutdown()
    assert completion.result() is True


def test_losing_the_connection_after_commit_does_not_redo_the_completion(
        repo: Store, sql, monkeypatch) -> None:
    """The post-commit NOTIFY is best effort: if the connection dies there, the committed
    completion is not retried (which would find it stale and report the lease lost)."""
    from dagq.runtime.sqlfiles import queries

    repo.submissions.submit_run(tenant="t", spec=spec({"a": {"executor": "builtin.noop"}}))
    [a] = repo.leases.lease(worker="w", queue="default", limit=5, ttl_s=30)
    monkeypatch.setitem(queries(), "notify", "SELECT pg_terminate_backend(pg_backend_pid())")
    assert complete(repo, a.id, a.version, {"ok": 1}) is True
    monkeypatch.undo()
    row = sql.execute("SELECT status, outputs FROM dagq.node_tasks WHERE id = %s",
                      (a.id,)).fetchone()
    assert row["status"] == "succeeded" and row["outputs"] == {"ok": 1}
    stale = sql.execute("SELECT coalesce(sum(value), 0) AS n FROM dagq.counters "
                        "WHERE name = 'stale_completions'").fetchone()["n"]
    assert stale == 0
