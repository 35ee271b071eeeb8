"""Pauses (migration 039): a paused queue, workflow, run or tenant is not leased (the
lease, the fair lease, the lease around locked runs, the completion's hand-off); resuming
leases it again; who, when and why are recorded."""

from __future__ import annotations

import uuid

import pytest

from dagq.errors import NotFound
from dagq.store import Completion, Handoff, Store
from tests.harness.specs import fan_out, spec

ONE = spec({"a": {"executor": "builtin.noop"}})


def lease(repo: Store, queue: str = "default", limit: int = 50) -> list:
    return repo.leases.lease(worker="w1", queue=queue, limit=limit, ttl_s=30)


def keys(leased: list) -> set[tuple[str, str]]:
    return {(str(n.run_id), n.node_key) for n in leased}


def test_a_paused_queue_is_not_leased_until_resumed(repo: Store, sql) -> None:
    repo.submissions.submit_run(tenant="t", spec=ONE)
    other = repo.submissions.submit_run(
        tenant="t", spec=spec({"g": {"executor": "builtin.noop", "queue": "gpu"}})).run_id
    pause, created = repo.pauses.add_pause(kind="queue", name="default", by="admin:k1",
                                       reason="bad deploy")
    assert created and pause.reason == "bad deploy" and pause.created_by == "admin:k1"
    assert lease(repo) == []
    assert [n.run_id for n in lease(repo, "gpu")] == [other]  # other queues go on
    ended = repo.pauses.end_pause(by="admin:k2", kind="queue", name="default")
    assert ended.id == pause.id and ended.resumed_by == "admin:k2" and ended.resumed_at
    assert len(lease(repo)) == 1
    # the history keeps it; the active list does not
    assert repo.pauses.list_pauses(None) == []
    assert [p.id for p in repo.pauses.list_pauses(None, history=True)] == [pause.id]


def test_pausing_twice_returns_the_active_pause(repo: Store) -> None:
    first, created = repo.pauses.add_pause(kind="queue", name="q", by="a")
    again, created_again = repo.pauses.add_pause(kind="queue", name="q", by="b", reason="x")
    assert created and not created_again and again == first


@pytest.mark.parametrize("kind", ["workflow", "run", "tenant"])
def test_a_paused_workflow_run_or_tenant_is_skipped_and_others_lease(
        repo: Store, kind: str) -> None:
    held = repo.submissions.submit_run(tenant="t1", spec=spec(
        {"a": {"executor": "builtin.noop"}}, name="held")).run_id
    free = repo.submissions.submit_run(tenant="t2", spec=spec(
        {"a": {"executor": "builtin.noop"}}, name="free")).run_id
    name = {"workflow": "held", "run": str(held), "tenant": "t1"}[kind]
    pause, _ = repo.pauses.add_pause(kind=kind, name=name, by="admin",
                                 tenant="t1" if kind == "tenant" else None)
    if kind == "run":
        assert pause.tenant == "t1"  # the run's tenant, read from the run
    assert [n.run_id for n in lease(repo)] == [free]
    assert lease(repo) == []
    repo.pauses.end_pause(by="admin", pause_id=pause.id)
    assert [n.run_id for n in lease(repo)] == [held]


def test_fair_leasing_skips_a_paused_tenant(repo: Store) -> None:
    runs = {tenant: {repo.submissions.submit_run(tenant=tenant, spec=ONE).run_id
                     for _ in range(3)} for tenant in ("t1", "t2", "t3")}
    repo.pauses.add_pause(kind="tenant", name="t2", by="admin", tenant="t2")
    paused = runs["t2"]
    leased = lease(repo)
    assert len(leased) == 6
    assert paused.isdisjoint(n.run_id for n in leased)
    assert lease(repo) == []


def test_the_lease_around_locked_runs_skips_paused_nodes(repo: Store) -> None:
    held = repo.submissions.submit_run(tenant="t", spec=ONE).run_id
    free = repo.submissions.submit_run(tenant="t", spec=ONE).run_id
    repo.pauses.add_pause(kind="run", name=str(held), by="admin")
    params = {"worker": "w1", "queue": "default", "ttl_s": 30, "capped": None}
    leased = repo.leases._lease(params, 10, None, None, around=True)
    assert [n.run_id for n in leased] == [free]


def test_the_hand_off_leaves_paused_nodes_queued(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=fan_out(3)).run_id
    [root] = lease(repo)
    repo.pauses.add_pause(kind="run", name=str(run_id), by="admin")
    recorded, leased = repo.leases.complete_and_lease(
        [Completion(root.id, root.version, {})],
        Handoff(worker="w1", ttl_s=30, executors=["builtin.noop"], room={"default": 10}))
    assert recorded == [True] and leased == []
    queued = sql.execute("SELECT count(*) AS n FROM dagq.node_tasks WHERE run_id = %s "
                         "AND status = 'queued'", (run_id,)).fetchone()["n"]
    assert queued == 3
    repo.pauses.end_pause(by="admin", kind="run", name=str(run_id))
    assert len(lease(repo)) == 3


def test_running_nodes_finish_while_paused(repo: Store) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=ONE).run_id
    [node] = lease(repo)
    repo.pauses.add_pause(kind="queue", name="default", by="admin")
    recorded, _ = repo.leases.complete_and_lease([Completion(node.id, node.version, {})], None)
    assert recorded == [True]
    assert repo.runs.get_run(run_id).status == "succeeded"


def test_a_tenant_scope_pauses_only_its_own_runs(repo: Store) -> None:
    mine = repo.submissions.submit_run(tenant="t1", spec=ONE).run_id
    theirs = repo.submissions.submit_run(tenant="t2", spec=ONE).run_id
    with pytest.raises(NotFound):
        repo.pauses.add_pause(kind="run", name=str(theirs), by="t1", scope="t1")
    with pytest.raises(NotFound):
        repo.pauses.add_pause(kind="run", name=str(uuid.uuid4()), by="t1", scope="t1")
    with pytest.raises(NotFound):
        repo.pauses.add_pause(kind="run", name="not-a-uuid", by="t1", scope="t1")
    pause, _ = repo.pauses.add_pause(kind="run", name=str(mine), by="t1", scope="t1")
    admins, _ = repo.pauses.add_pause(kind="run", name=str(theirs), by="admin")
    assert [p.id for p in repo.pauses.list_pauses("t1")] == [pause.id]
    with pytest.raises(NotFound):  # another tenant's pause: as if it did not exist
        repo.pauses.end_pause(by="t1", pause_id=admins.id, scope="t1")
    repo.pauses.end_pause(by="t1", pause_id=pause.id, scope="t1")
    assert [p.id for p in repo.pauses.list_pauses(None)] == [admins.id]
