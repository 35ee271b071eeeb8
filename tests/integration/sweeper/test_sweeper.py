"""The sweeper's passes, driven by backdated rows and explicit `now` (no sleeps)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from dagq.config import Settings
from dagq.store import Store
from dagq.sweeper.passes import Sweeper
from tests.harness.drive import complete, drive
from tests.harness.specs import spec


@pytest.fixture
def sweeper(repo: Store) -> Sweeper:
    return Sweeper(repo, Settings(worker_dead_after_s=30, retention_days=7))


def expire(sql, node_id: int) -> None:
    sql.execute("UPDATE dagq.node_tasks SET lease_expires_at = now() - interval '1 minute' "
                "WHERE id = %s", (node_id,))


def types_for(sql, run_id, node_key):
    return [r["type"] for r in sql.execute(
        "SELECT type FROM dagq.run_events WHERE run_id = %s AND node_key = %s ORDER BY id",
        (run_id, node_key)).fetchall()]


def one_node(repo, **node) -> tuple:
    wf = spec({"a": {"executor": "builtin.noop", "backoff": {"initial_s": 0, "max_s": 0},
                     **node}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    [leased] = repo.leases.lease(worker="w1", queue="default", limit=1, ttl_s=30)
    return run_id, leased


def test_expired_lease_is_requeued_as_a_failed_attempt(repo, sweeper, sql) -> None:
    run_id, leased = one_node(repo, max_attempts=3)
    assert sweeper.reclaim() == {"reclaimed": 0, "retried": 0, "failed": 0}
    expire(sql, leased.id)
    assert sweeper.reclaim() == {"reclaimed": 1, "retried": 1, "failed": 0}
    row = sql.execute("SELECT status, attempts, error FROM dagq.node_tasks WHERE id = %s",
                      (leased.id,)).fetchone()
    assert (row["status"], row["attempts"]) == ("queued", 1)
    assert row["error"]["type"] == "LeaseExpired"
    assert types_for(sql, run_id, "a")[-2:] == ["node_lease_expired", "node_retry"]
    [again] = repo.leases.lease(worker="w2", queue="default", limit=1, ttl_s=30)
    assert again.attempts == 2
    assert complete(repo, again.id, again.version, {}) is True
    assert repo.runs.get_run(run_id).status == "succeeded"


def test_expiry_on_the_last_attempt_fails_the_node_and_run(repo, sweeper, sql) -> None:
    run_id, leased = one_node(repo, max_attempts=1)
    expire(sql, leased.id)
    assert sweeper.reclaim()["failed"] == 1
    run = repo.runs.get_run(run_id)
    assert run.status == "failed" and run.nodes[0].status == "failed"
    assert run.error["type"] == "LeaseExpired"
    assert types_for(sql, run_id, "a")[-2:] == ["node_lease_expired", "node_failed"]


def test_live_heartbeating_lease_is_never_reclaimed(repo, sweeper, sql) -> None:
    _, leased = one_node(repo)
    sql.execute("UPDATE dagq.node_tasks SET lease_expires_at = now() + interval '1 second' "
                "WHERE id = %s", (leased.id,))
    repo.leases.heartbeat(worker="w1", node_ids=[leased.id], ttl_s=30)
    # Even a sweeper that thinks it is 20 s later finds the extended lease alive.
    later = sql.execute("SELECT now() + interval '20 seconds' AS t").fetchone()["t"]
    assert sweeper.reclaim(now=later)["reclaimed"] == 0


def test_late_completion_after_reclaim_changes_nothing(repo, sweeper, sql) -> None:
    run_id, leased = one_node(repo, max_attempts=3)
    expire(sql, leased.id)
    sweeper.reclaim()
    assert complete(repo, leased.id, leased.version, {"late": True}) is False
    assert repo.leases.fail(leased.id, leased.version, {"type": "E", "message": "late"}) == "stale"
    row = sql.execute("SELECT status, outputs FROM dagq.node_tasks WHERE id = %s",
                      (leased.id,)).fetchone()
    assert row == {"status": "queued", "outputs": None}
    assert repo.runs.get_run(run_id).status == "running"


def test_completion_racing_the_reclaim_leaves_one_consistent_state(repo, sweeper, sql) -> None:
    for _ in range(20):
        run_id, leased = one_node(repo, max_attempts=1)
        expire(sql, leased.id)
        barrier = threading.Barrier(2)

        def finish(leased=leased, barrier=barrier):
            barrier.wait()
            return complete(repo, leased.id, leased.version, {"done": True})

        def reclaim(barrier=barrier):
            barrier.wait()
            return sweeper.reclaim()["reclaimed"]

        with ThreadPoolExecutor(2) as pool:
            completed, reclaimed = pool.submit(finish), pool.submit(reclaim)
            completed, reclaimed = completed.result(), reclaimed.result()
        assert completed != bool(reclaimed)  # exactly one of them won
        run = repo.runs.get_run(run_id)
        assert run.status == ("succeeded" if completed else "failed")
        assert run.nodes_remaining == 0
        terminal = [t for t in types_for(sql, run_id, "a")
                    if t in ("node_succeeded", "node_failed")]
        assert len(terminal) == 1


def test_three_sweepers_reclaim_each_of_1000_leases_once(repo, sql) -> None:
    wf = spec({f"n{i}": {"executor": "builtin.noop"} for i in range(1000)}, name="wide")
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    while repo.leases.lease(worker="gone", queue="default", limit=200, ttl_s=30):
        pass
    sql.execute("UPDATE dagq.node_tasks SET lease_expires_at = now() - interval '1 minute'")
    sweepers = [Sweeper(repo, Settings()) for _ in range(3)]
    barrier = threading.Barrier(3)

    def sweep(s: Sweeper) -> int:
        barrier.wait()
        return s.reclaim()["reclaimed"]

    with ThreadPoolExecutor(3) as pool:
        counts = list(pool.map(sweep, sweepers))
    assert sum(counts) == 1000
    per_node = sql.execute("""
        SELECT count(*) AS n FROM dagq.run_events
        WHERE run_id = %s AND type = 'node_lease_expired'
        GROUP BY node_key HAVING count(*) <> 1""", (run_id,)).fetchall()
    assert per_node == []
    assert sql.execute("SELECT count(*) AS n FROM dagq.node_tasks WHERE status = 'queued' "
                       "AND attempts = 1").fetchone()["n"] == 1000


def test_dead_worker_leases_expire_without_waiting_for_the_ttl(repo, sweeper, sql) -> None:
    repo.fleet.register_worker(worker="w1", hostname="h", pid=1, queues=["default"], threads=1,
                               executors=[])
    run_id, leased = one_node(repo)
    sql.execute("UPDATE dagq.workers SET heartbeat_at = now() - interval '5 minutes'")
    counts = sweeper.run_once()
    assert counts["workers"] == 1 and counts["reclaimed"] == 1
    assert sql.execute("SELECT status FROM dagq.workers").fetchone()["status"] == "dead"
    assert repo.runs.get_run(run_id).nodes[0].status == "queued"


def test_heal_finishes_runs_whose_nodes_all_finished(repo, sweeper, sql) -> None:
    run_id = repo.submissions.submit_run(
        tenant="t", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
    drive(repo)
    # Simulate a lost finalisation: nodes are terminal, the run still says running.
    sql.execute("UPDATE dagq.runs SET status = 'running', finished_at = NULL, "
                "nodes_remaining = 1 WHERE id = %s", (run_id,))
    assert sweeper.heal() == {"healed": 1}
    assert repo.runs.get_run(run_id).status == "succeeded"
    assert sweeper.heal() == {"healed": 0}


def test_deadline_cancels_what_remains_and_fails_the_run(repo, sweeper, sql) -> None:
    wf = spec({"a": {"executor": "builtin.noop"},
               "b": {"executor": "builtin.noop", "depends_on": ["a"]}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf, deadline_s=60).run_id
    assert sweeper.deadlines() == {"expired_runs": 0}
    later = sql.execute("SELECT now() + interval '2 minutes' AS t").fetchone()["t"]
    assert sweeper.deadlines(now=later) == {"expired_runs": 1}
    run = repo.runs.get_run(run_id)
    assert run.status == "failed" and run.error["type"] == "DeadlineExceeded"
    assert {n.status for n in run.nodes} == {"cancelled"}


def test_prune_removes_old_finished_runs_with_nodes_then_their_partitions_go(
        repo, sweeper, sql) -> None:
    """Prune deletes finished runs past retention with their nodes; their events go when
    their day's partition is dropped whole (issue 30), not row by row."""
    old = repo.submissions.submit_run(
        tenant="t", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
    drive(repo)
    fresh = repo.submissions.submit_run(
        tenant="t", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
    drive(repo)
    unfinished = repo.submissions.submit_run(
        tenant="t", spec=spec({"a": {"executor": "builtin.noop"}}))
    sql.execute("UPDATE dagq.runs SET finished_at = now() - interval '8 days' WHERE id = %s",
                (old,))
    assert sweeper.prune() == {"pruned_runs": 1, "pruned_deliveries": 0,
                              "pruned_events": 0, "pruned_submit_requests": 0}
    remaining = {r["id"] for r in sql.execute("SELECT id FROM dagq.runs").fetchall()}
    assert remaining == {fresh, unfinished.run_id}
    assert sql.execute("SELECT count(*) AS n FROM dagq.node_tasks WHERE run_id = %s",
                       (old,)).fetchone()["n"] == 0
    # A month on (every run now finished and pruned), the partitions holding the old
    # run's events are past the retention and under no stored run: dropped whole.
    later = sql.execute("SELECT now() + interval '30 days' AS t").fetchone()["t"]
    sql.execute("UPDATE dagq.runs SET status = 'cancelled', finished_at = now()")
    assert sweeper.prune(now=later) == {"pruned_runs": 2, "pruned_deliveries": 0,
                                       "pruned_events": 0, "pruned_submit_requests": 0}
    counts = sweeper.partitions(now=later)
    assert counts["partitions_created"] >= 30 and counts["partitions_dropped"] >= 1
    count = sql.execute("SELECT count(*) AS n FROM dagq.run_events WHERE run_id = %s",
                        (old,)).fetchone()["n"]
    assert count == 0
    assert sweeper.partitions(now=later) == {"partitions_created": 0, "partitions_dropped": 0}


def test_run_once_twice_is_harmless(repo, sweeper, sql) -> None:
    _, leased = one_node(repo)
    expire(sql, leased.id)
    first, second = sweeper.run_once(), sweeper.run_once()
    assert first["reclaimed"] == 1 and second["reclaimed"] == 0


def test_a_worker_is_dead_only_after_three_missed_heartbeats(repo, sql) -> None:
    repo.fleet.register_worker(worker="slow", hostname="h", pid=1, queues=["default"], threads=1,
                               executors=[], heartbeat_s=10)
    sweeper = Sweeper(repo, Settings(worker_dead_after_s=2))
    sql.execute("UPDATE dagq.workers SET heartbeat_at = now() - interval '15 seconds'")
    assert sweeper.dead_workers()["workers"] == 0  # 15 s < 3 heartbeats of 10 s
    sql.execute("UPDATE dagq.workers SET heartbeat_at = now() - interval '31 seconds'")
    assert sweeper.dead_workers()["workers"] == 1


def test_every_pass_of_run_once_is_scheduled(sweeper) -> None:
    from dagq.sweeper.passes import build_scheduler

    scheduler = build_scheduler(sweeper, sweeper.settings)
    scheduled = {job.id for job in scheduler.get_jobs()}
    assert scheduled == {name for name, _job, _s in sweeper.passes()}
    assert {"slots", "dead_letters"} <= scheduled
