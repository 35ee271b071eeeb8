"""A stopping worker hands back the attempts it could not finish within its grace
(issue 27, point 6): queued again at once, no attempt charged, fenced like every
transition, and the executor still running can no longer complete the node."""

from __future__ import annotations

from dagq.store import Store
from dagq.store.streams import StreamChunk
from tests.harness.drive import complete
from tests.harness.specs import spec


def lease_one(repo: Store, worker: str = "w1"):
    nodes = repo.leases.lease(worker=worker, queue="default", limit=1, ttl_s=30)
    assert len(nodes) == 1
    return nodes[0]


def node_row(sql, node_id: int):
    return sql.execute("SELECT status, attempts, version, lease_owner, started_at "
                       "FROM dagq.node_tasks WHERE id = %s", (node_id,)).fetchone()


def events(sql, run_id):
    return [(r["type"], r["attempt"], r["data"].get("reason")) for r in sql.execute(
        "SELECT type, attempt, data FROM dagq.run_events WHERE run_id = %s AND node_key = 'a'"
        " ORDER BY id", (run_id,)).fetchall()]


def test_a_released_attempt_is_queued_uncharged_and_its_late_outcome_refused(
        repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=spec({"a": {"executor": "builtin.noop",
                                                                      "max_attempts": 1}})).run_id
    node = lease_one(repo)
    assert node.attempts == 1
    repo.streams.append_stream([StreamChunk(node.id, node.version, run_id, 1, text="partial ")])
    assert repo.leases.release_leases(worker="w1", leases=[(node.id, node.version)]) == 1
    row = node_row(sql, node.id)
    assert (row["status"], row["attempts"], row["lease_owner"], row["started_at"]) == \
        ("queued", 0, None, None)
    assert row["version"] > node.version
    assert events(sql, run_id) == [("node_queued", 0, None), ("node_started", 1, None),
                                   ("node_released", 1, "worker_shutdown")]
    # The executor that was still running finishes: its outcome is fenced off.
    assert complete(repo, node.id, node.version, {"late": True}) is False
    assert repo.leases.fail(node.id, node.version, {"type": "WorkerShutdown", "message": ""}) \
        == "stale"
    assert repo.streams.node_stream(run_id, "a", 0, None)["chunks"] == 0
    # Any worker leases it again at once, on the same (first) attempt: with
    # max_attempts 1, a charged stop would have left no attempt to run.
    again = lease_one(repo, "w2")
    assert again.id == node.id and again.attempts == 1
    assert repo.streams.node_stream(run_id, "a", 1, None)["chunks"] == 0  # the old chunks went
    assert complete(repo, again.id, again.version, {"ok": True}) is True
    run = repo.runs.get_run(run_id)
    assert run.status == "succeeded" and run.nodes[0].attempts == 1


def test_release_is_fenced_by_owner_and_version(repo: Store, sql) -> None:
    repo.submissions.submit_run(tenant="t", spec=spec({"a": {"executor": "builtin.noop"}}))
    node = lease_one(repo)
    assert repo.leases.release_leases(worker="other", leases=[(node.id, node.version)]) == 0
    assert repo.leases.release_leases(worker="w1", leases=[(node.id, node.version - 1)]) == 0
    assert node_row(sql, node.id)["status"] == "running"
    assert complete(repo, node.id, node.version, {}) is True
    assert repo.leases.release_leases(worker="w1", leases=[(node.id, node.version)]) == 0
    assert node_row(sql, node.id)["status"] == "succeeded"


def test_a_released_node_of_a_cancelled_run_is_cancelled(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(
        tenant="t", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
    node = lease_one(repo)
    repo.runs.cancel_run(run_id, "t")
    assert repo.leases.release_leases(worker="w1", leases=[(node.id, node.version)]) == 0
    assert node_row(sql, node.id)["status"] == "cancelled"
    assert repo.runs.get_run(run_id).status == "cancelled"
