"""A completion leases the nodes it released, in its own transaction (the hand-off)."""

from __future__ import annotations

import psycopg

from dagq.store import Completion, Handoff, Store
from dagq.store.leases import HandedOff
from tests.harness.drive import complete
from tests.harness.specs import fan_out, spec

SERVED = ["builtin.noop", "builtin.echo", "builtin.merge"]


def handoff(room: int, *, queue: str = "default", executors=SERVED) -> Handoff:
    return Handoff(worker="w1", ttl_s=30, executors=list(executors), room={queue: room})


def events(sql, run_id):
    return [(e["node_key"], e["type"]) for e in sql.execute(
        "SELECT node_key, type FROM dagq.run_events WHERE run_id = %s ORDER BY id",
        (run_id,))]


def test_released_nodes_are_leased_by_the_completing_worker(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=fan_out(3), inputs={"q": 1}).run_id
    [root] = repo.leases.lease(worker="w1", queue="default", limit=5, ttl_s=30)
    recorded, leased = repo.leases.complete_and_lease(
        [Completion(root.id, root.version, {"r": 1})], handoff(10))
    assert recorded == [True]
    assert sorted(n.node_key for n in leased) == ["m0", "m1", "m2"]
    assert all(n.deps == {"root": {"r": 1}} and n.run_inputs == {"q": 1} and
               n.queue == "default" and n.attempts == 1 for n in leased)
    rows = sql.execute("SELECT node_key, status, lease_owner, version FROM dagq.node_tasks "
                       "WHERE run_id = %s AND node_key LIKE 'm%%'", (run_id,)).fetchall()
    assert {r["status"] for r in rows} == {"running"}
    assert {r["lease_owner"] for r in rows} == {"w1"}
    assert {r["node_key"]: r["version"] for r in rows} == {n.node_key: n.version
                                                           for n in leased}
    # Each released node is queued, then started: in that order in the event log.
    log = events(sql, run_id)
    for key in ("m0", "m1", "m2"):
        assert log.index((key, "node_queued")) < log.index((key, "node_started"))
    assert log.count(("m0", "node_started")) == 1
    # Nothing is left queued, so the queue's consumers are not woken for it.
    assert repo.leases.lease(worker="w2", queue="default", limit=5, ttl_s=30) == []


def test_a_hand_off_fills_only_the_free_prefetch_slots(repo: Store) -> None:
    repo.submissions.submit_run(tenant="t", spec=fan_out(5))
    [root] = repo.leases.lease(worker="w1", queue="default", limit=5, ttl_s=30)
    _, leased = repo.leases.complete_and_lease([Completion(root.id, root.version, {})], handoff(2))
    assert len(leased) == 2
    rest = repo.leases.lease(worker="w2", queue="default", limit=10, ttl_s=30)
    assert len(rest) == 3 and {n.node_key for n in rest}.isdisjoint(n.node_key for n in leased)


def test_the_highest_priority_released_nodes_are_handed_off_first(repo: Store) -> None:
    repo.submissions.submit_run(tenant="t", spec=spec({
        "root": {"executor": "builtin.noop"},
        "low": {"executor": "builtin.noop", "depends_on": ["root"]},
        "high": {"executor": "builtin.noop", "depends_on": ["root"], "priority": 5},
    }))
    [root] = repo.leases.lease(worker="w1", queue="default", limit=5, ttl_s=30)
    _, leased = repo.leases.complete_and_lease([Completion(root.id, root.version, {})], handoff(1))
    assert [n.node_key for n in leased] == ["high"]


def test_only_served_executors_and_queues_are_handed_off(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=spec({
        "root": {"executor": "builtin.noop"},
        "mine": {"executor": "builtin.noop", "depends_on": ["root"]},
        "other_executor": {"executor": "builtin.echo", "depends_on": ["root"]},
        "other_queue": {"executor": "builtin.noop", "depends_on": ["root"], "queue": "gpu"},
    })).run_id
    [root] = repo.leases.lease(worker="w1", queue="default", limit=5, ttl_s=30)
    _, leased = repo.leases.complete_and_lease(
        [Completion(root.id, root.version, {})], handoff(10, executors=["builtin.noop"]))
    assert [n.node_key for n in leased] == ["mine"]
    status = {r["node_key"]: r["status"] for r in sql.execute(
        "SELECT node_key, status FROM dagq.node_tasks WHERE run_id = %s", (run_id,))}
    assert status["other_executor"] == "queued" and status["other_queue"] == "queued"


def queued_notes(db_url: str, action) -> list[str]:
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN dagq_queued")
        action()
        return [n.payload for n in listener.notifies(timeout=0.5)]


def test_leftover_released_nodes_wake_their_queue(repo: Store, db_url: str) -> None:
    repo.submissions.submit_run(tenant="t", spec=fan_out(3))
    [root] = repo.leases.lease(worker="w1", queue="default", limit=5, ttl_s=30)
    notes = queued_notes(db_url, lambda: repo.leases.complete_and_lease(
        [Completion(root.id, root.version, {})], handoff(1)))
    assert notes == ["default"]


def test_no_wake_up_when_every_released_node_was_handed_off(repo: Store,
                                                            db_url: str) -> None:
    repo.submissions.submit_run(tenant="t", spec=fan_out(3))
    [root] = repo.leases.lease(worker="w1", queue="default", limit=5, ttl_s=30)
    notes = queued_notes(db_url, lambda: repo.leases.complete_and_lease(
        [Completion(root.id, root.version, {})], handoff(3)))
    assert notes == []


def test_without_room_nothing_is_handed_off(repo: Store) -> None:
    repo.submissions.submit_run(tenant="t", spec=fan_out(2))
    [root] = repo.leases.lease(worker="w1", queue="default", limit=5, ttl_s=30)
    recorded, leased = repo.leases.complete_and_lease(
        [Completion(root.id, root.version, {})], handoff(0))
    assert recorded == [True] and leased == []
    assert len(repo.leases.lease(worker="w2", queue="default", limit=5, ttl_s=30)) == 2


def test_a_stale_completion_hands_off_nothing(repo: Store) -> None:
    repo.submissions.submit_run(tenant="t", spec=fan_out(2))
    [root] = repo.leases.lease(worker="w1", queue="default", limit=5, ttl_s=30)
    complete(repo, root.id, root.version, {})
    recorded, leased = repo.leases.complete_and_lease(
        [Completion(root.id, root.version, {})], handoff(10))
    assert recorded == [False] and leased == []


def test_released_nodes_never_go_ahead_of_higher_priority_work(repo: Store) -> None:
    repo.submissions.submit_run(tenant="t", spec=fan_out(2))
    [root] = repo.leases.lease(worker="w1", queue="default", limit=5, ttl_s=30)
    urgent = repo.submissions.submit_run(tenant="t", spec=spec({"u": {"executor": "builtin.noop"}},
                                                               name="urgent"), priority=5).run_id
    _, leased = repo.leases.complete_and_lease([Completion(root.id, root.version, {})], handoff(10))
    assert leased == []
    [first, *rest] = repo.leases.lease(worker="w2", queue="default", limit=5, ttl_s=30)
    assert first.run_id == urgent and len(rest) == 2


def test_released_nodes_may_go_ahead_of_older_work_of_their_priority(repo: Store) -> None:
    repo.submissions.submit_run(tenant="t", spec=fan_out(2))
    [root] = repo.leases.lease(worker="w1", queue="default", limit=5, ttl_s=30)
    repo.submissions.submit_run(tenant="t", spec=spec({"later": {"executor": "builtin.noop"}}))
    _, leased = repo.leases.complete_and_lease([Completion(root.id, root.version, {})], handoff(10))
    assert sorted(n.node_key for n in leased) == ["m0", "m1"]  # depth first


def test_a_retry_after_a_lost_commit_adopts_what_the_first_attempt_leased(
        repo: Store) -> None:
    """The first attempt committed but its answer was lost; the retry finds its
    completion already recorded, and must still return the nodes it handed off."""
    repo.submissions.submit_run(tenant="t", spec=fan_out(2))
    [root] = repo.leases.lease(worker="w1", queue="default", limit=5, ttl_s=30)
    done = [Completion(root.id, root.version, {})]
    earlier = HandedOff()
    first = repo.leases._complete_and_lease(done, handoff(10), earlier)  # committed
    assert len(first[1]) == 2 and len(earlier.rows) == 2
    handed_off = list(earlier.rows)
    recorded, leased = repo.leases._complete_and_lease(done, handoff(10), earlier)  # the retry
    assert recorded == [False]
    assert sorted(n.node_key for n in leased) == ["m0", "m1"]
    # A lease no longer held (finished, reclaimed, another worker's) is not adopted.
    complete(repo, leased[0].id, leased[0].version, {})
    _, adopted = repo.leases._complete_and_lease(done, handoff(10), HandedOff(list(handed_off)))
    assert [n.id for n in adopted] == [leased[1].id]


def test_a_failing_hand_off_delivery_still_releases_the_finished_leases(
        repo: Store) -> None:
    from dagq.workers.completions import CompletionBatcher

    class BrokenTarget:
        def handoff(self) -> Handoff:
            return handoff(10)

        def take(self, nodes) -> None:
            raise RuntimeError("no consumer")

    repo.submissions.submit_run(tenant="t", spec=fan_out(2))
    [root] = repo.leases.lease(worker="w1", queue="default", limit=5, ttl_s=30)
    outcomes: list = []
    batcher = CompletionBatcher(repo, BrokenTarget())  # not started: writes at once
    batcher.submit(Completion(root.id, root.version, {}), outcomes.append)
    assert outcomes == [True]
