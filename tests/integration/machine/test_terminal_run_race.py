"""Issue 12, fault 1: no node of a terminal run is ever requeued, leased or started.

The race, reproduced deterministically with row locks: `transform` fails for good (its
run fails fast) while `flaky`'s retryable failure of the same run is being recorded. A
third connection holds the run row, so both transactions line up on it in a chosen
order; releasing it lets them commit in that order.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from dagq.store import Completion, Handoff, Store
from tests.harness.drive import complete
from tests.harness.specs import spec

ERROR = {"type": "RuntimeError", "message": "boom"}


def workflow():
    return spec({
        "load": {"executor": "builtin.noop"},
        "transform": {"executor": "builtin.fail", "depends_on": ["load"],
                      "params": {"fatal": True}},
        "flaky": {"executor": "builtin.fail", "depends_on": ["load"],
                  "params": {"times": 1}, "backoff": {"initial_s": 0.5, "max_s": 0.5}},
        "notify": {"executor": "builtin.sleep", "depends_on": ["load"],
                   "params": {"seconds": 3}},
        "publish": {"executor": "builtin.noop",
                    "depends_on": ["transform", "flaky", "notify"]},
    }, name="fail-fast-race")


def start_middle_level(repo: Store) -> tuple[Any, dict[str, Any]]:
    run_id = repo.submissions.submit_run(tenant="t", spec=workflow()).run_id
    [load] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    assert complete(repo, load.id, load.version, {})
    leased = {n.node_key: n for n in repo.leases.lease(worker="w", queue="default", limit=5,
                                                 ttl_s=30)}
    assert set(leased) == {"transform", "flaky", "notify"}
    return run_id, leased


def lock_waiters(sql) -> int:
    return sql.execute("SELECT count(*) AS n FROM pg_stat_activity "
                       "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                       ).fetchone()["n"]


def wait_for_waiters(sql, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while lock_waiters(sql) < n:
        assert time.monotonic() < deadline, f"expected {n} transaction(s) waiting on a lock"
        time.sleep(0.01)


def race(repo, sql, db_url, run_id, leased, *, first: str) -> dict[str, str]:
    """Fail transform (fatal) and flaky (retryable) concurrently; `first` lines up on
    the run row first, so it is the first to commit."""
    calls = {
        "transform": lambda: repo.leases.fail(leased["transform"].id, leased["transform"].version,
                                              ERROR, retryable=False),
        "flaky": lambda: repo.leases.fail(leased["flaky"].id, leased["flaky"].version, ERROR),
    }
    second = "flaky" if first == "transform" else "transform"
    holder = psycopg.connect(db_url)
    pool = ThreadPoolExecutor(2)
    try:
        holder.execute("SELECT 1 FROM dagq.runs WHERE id = %s FOR NO KEY UPDATE", (run_id,))
        futures = {first: pool.submit(calls[first])}
        wait_for_waiters(sql, 1)
        futures[second] = pool.submit(calls[second])
        wait_for_waiters(sql, 2)
        holder.rollback()
        return {key: future.result(timeout=30) for key, future in futures.items()}
    finally:
        holder.close()
        pool.shutdown()


def events(sql, run_id) -> list[dict[str, Any]]:
    return sql.execute("SELECT id, node_key, type, attempt FROM dagq.run_events "
                       "WHERE run_id = %s ORDER BY id", (run_id,)).fetchall()


def after_terminal(sql, run_id, types: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = events(sql, run_id)
    end = next(r["id"] for r in rows if r["type"] == "run_failed")
    return [r for r in rows if r["id"] > end and r["type"] in types]


def make_flaky_ready(sql, run_id) -> None:
    """Time through data: whatever backoff flaky got has passed."""
    sql.execute("UPDATE dagq.node_tasks SET available_at = now() WHERE run_id = %s "
                "AND status = 'queued'", (run_id,))


def node_status(sql, run_id, key: str) -> str:
    return sql.execute("SELECT status FROM dagq.node_tasks WHERE run_id = %s AND "
                       "node_key = %s", (run_id, key)).fetchone()["status"]


def finish_notify(repo, run_id, leased) -> None:
    notify = leased["notify"]
    assert repo.leases.heartbeat(worker="w", node_ids=[notify.id], ttl_s=30).stop == {notify.id}
    assert repo.leases.fail(notify.id, notify.version, ERROR, cancelled=True) == "cancelled"
    run = repo.runs.get_run(run_id)
    assert run.status == "failed" and run.nodes_remaining == 0
    assert {n.status for n in run.nodes} <= {"failed", "cancelled", "succeeded"}


def test_a_retry_that_commits_after_the_run_failed_ends_the_node_cancelled(
        repo: Store, sql, db_url: str) -> None:
    run_id, leased = start_middle_level(repo)
    outcomes = race(repo, sql, db_url, run_id, leased, first="transform")
    assert outcomes == {"transform": "failed", "flaky": "cancelled"}
    assert node_status(sql, run_id, "flaky") == "cancelled"
    assert after_terminal(sql, run_id, ("node_retry",)) == []
    make_flaky_ready(sql, run_id)
    assert repo.leases.lease(worker="w2", queue="default", limit=5, ttl_s=30) == []
    assert after_terminal(sql, run_id, ("node_started",)) == []
    cancelled = [e for e in events(sql, run_id) if e["node_key"] == "flaky"][-1]
    assert cancelled["type"] == "node_cancelled"
    finish_notify(repo, run_id, leased)


def test_a_node_requeued_just_before_the_run_failed_is_cancelled_not_leased(
        repo: Store, sql, db_url: str) -> None:
    """flaky's retry commits first (the run is still running), but transform's fail-fast
    had already passed over it: the node sits queued in a failed run. Leasing it must
    cancel it, never start it."""
    run_id, leased = start_middle_level(repo)
    outcomes = race(repo, sql, db_url, run_id, leased, first="flaky")
    assert outcomes == {"flaky": "retry", "transform": "failed"}
    make_flaky_ready(sql, run_id)
    assert repo.leases.lease(worker="w2", queue="default", limit=5, ttl_s=30) == []
    assert after_terminal(sql, run_id, ("node_started",)) == []
    assert node_status(sql, run_id, "flaky") == "cancelled"
    assert [e["type"] for e in after_terminal(sql, run_id, ("node_cancelled",))] == [
        "node_cancelled"]
    finish_notify(repo, run_id, leased)


@pytest.mark.parametrize("run_status", ["failed", "cancelled"])
def test_a_hand_off_in_a_terminal_run_cancels_instead_of_leasing(
        repo: Store, sql, run_status: str) -> None:
    """However a released node ended up queued in a run that is already over, the
    completing worker's hand-off cancels it."""
    wf = spec({"a": {"executor": "builtin.noop"}, "side": {"executor": "builtin.noop"},
               "b": {"executor": "builtin.noop", "depends_on": ["a"]}}, fail_fast=True)
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    nodes = {n.node_key: n for n in repo.leases.lease(worker="w", queue="default", limit=5,
                                                ttl_s=30)}
    # The run ended while a and side ran (as a fail-fast or a cancel does).
    sql.execute("UPDATE dagq.runs SET status = %s, finished_at = now() WHERE id = %s",
                (run_status, run_id))
    handoff = Handoff(worker="w", ttl_s=30, executors=["builtin.noop"],
                      room={"default": 4})
    a = nodes["a"]
    done, handed = repo.leases.complete_and_lease([Completion(a.id, a.version, {})], handoff)
    assert done == [True] and handed == []
    assert node_status(sql, run_id, "b") == "cancelled"
    types = [e["type"] for e in events(sql, run_id) if e["node_key"] == "b"]
    assert types == ["node_queued", "node_cancelled"]
    side = nodes["side"]
    assert repo.leases.fail(side.id, side.version, ERROR, cancelled=True) == "cancelled"
    assert repo.runs.get_run(run_id).nodes_remaining == 0


def test_a_reclaimed_lease_of_a_terminal_run_is_cancelled_not_requeued(
        repo: Store, sql, db_url: str) -> None:
    """The sweeper's reclaim makes the same decision under the run lock."""
    from dagq.config import Settings
    from dagq.sweeper.passes import Sweeper

    run_id, leased = start_middle_level(repo)
    assert repo.leases.fail(leased["transform"].id, leased["transform"].version, ERROR,
                            retryable=False) == "failed"
    sql.execute("UPDATE dagq.node_tasks SET lease_expires_at = now() - interval '1 minute' "
                "WHERE run_id = %s AND status = 'running'", (run_id,))
    counts = Sweeper(repo, Settings()).reclaim()
    assert counts["retried"] == 0
    make_flaky_ready(sql, run_id)
    assert repo.leases.lease(worker="w2", queue="default", limit=5, ttl_s=30) == []
    assert after_terminal(sql, run_id, ("node_started", "node_retry")) == []
    assert {node_status(sql, run_id, k) for k in ("flaky", "notify")} == {"cancelled"}
    assert repo.runs.get_run(run_id).nodes_remaining == 0


def test_a_shutdown_requeue_in_a_terminal_run_cancels(repo: Store, sql) -> None:
    """A stopping worker hands back a prefetched lease of a run that ended meanwhile."""
    wf = spec({"a": {"executor": "builtin.noop"}, "b": {"executor": "builtin.noop"}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    nodes = {n.node_key: n for n in repo.leases.lease(worker="w", queue="default", limit=5,
                                                ttl_s=30)}
    repo.runs.cancel_run(run_id, None)
    b = nodes["b"]
    assert repo.leases.requeue_unstarted(worker="w", leases=[(b.id, b.version)]) == 0
    assert node_status(sql, run_id, "b") == "cancelled"
    assert repo.leases.lease(worker="w2", queue="default", limit=5, ttl_s=30) == []
    a = nodes["a"]
    assert repo.leases.fail(a.id, a.version, ERROR, cancelled=True) == "cancelled"
    assert repo.runs.get_run(run_id).nodes_remaining == 0
