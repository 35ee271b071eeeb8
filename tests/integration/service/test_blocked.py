"""Why a node is not running (issue 32, item 6), each reason produced by a real
situation and read back through service.get_run (what GET /v1/runs/{id} and `dagq run
why` show): dependencies pending, a signal wait (until its timeout), a retry's back-off
(until it ends), a pause (by whom, why), no live worker for its executor and queue; a
ready node is not blocked; the run carries its earliest-blocked node's reason."""

from __future__ import annotations

from dagq import service
from dagq.models import ExecutorInfo
from dagq.service import pauses
from dagq.store import Store
from tests.harness.specs import spec

CHAIN = spec({"a": {"executor": "builtin.noop"},
              "b": {"executor": "builtin.noop", "depends_on": ["a"]}}, name="chain")


def serve(repo: Store, *executors: str) -> None:
    repo.fleet.register_worker(worker="w1", hostname="h", pid=1, queues=["default"],
                               threads=1, executors=[ExecutorInfo(name=e) for e in executors])


def blocked(repo: Store, run_id) -> dict[str, tuple[str, str] | None]:
    run = service.get_run(repo, run_id)
    return {n.key: (n.blocked.reason, n.blocked.detail) if n.blocked else None
            for n in run.nodes}


def test_dependencies_and_a_ready_node(repo: Store) -> None:
    serve(repo, "builtin.noop")
    run_id = repo.submissions.submit_run(tenant="t", spec=CHAIN).run_id
    assert blocked(repo, run_id) == {"a": None, "b": ("dependencies", "waits for a")}
    assert service.get_run(repo, run_id).blocked.reason == "dependencies"


def test_no_live_worker(repo: Store) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=CHAIN).run_id
    reason, detail = blocked(repo, run_id)["a"]
    assert reason == "no_worker" and "'builtin.noop'" in detail and "'default'" in detail


def test_paused_by_whom_and_why(repo: Store) -> None:
    serve(repo, "builtin.noop")
    run_id = repo.submissions.submit_run(tenant="t", spec=CHAIN).run_id
    pauses.pause(repo, None, kind="workflow", name="chain", reason="bad deploy")
    assert blocked(repo, run_id)["a"] == ("paused", "workflow chain paused by cli: bad deploy")
    run = service.get_run(repo, run_id)
    assert run.blocked.reason == "paused"  # the cause, before b's waiting for a
    pauses.resume(repo, None, kind="workflow", name="chain")
    assert blocked(repo, run_id)["a"] is None


def test_retry_backoff_until(repo: Store) -> None:
    serve(repo, "builtin.noop")
    run_id = repo.submissions.submit_run(tenant="t", spec=spec(
        {"a": {"executor": "builtin.noop", "max_attempts": 3,
               "backoff": {"initial_s": 60, "max_s": 60}}})).run_id
    [node] = repo.leases.lease(worker="w1", queue="default", limit=1, ttl_s=30)
    assert repo.leases.fail(node.id, node.version, {"type": "Boom", "message": "x"}) == "retry"
    [a] = service.get_run(repo, run_id).nodes
    assert a.blocked.reason == "retry_backoff" and a.blocked.until == a.available_at
    assert a.blocked.detail == "attempt 2 of 3 waits for its back-off"


def test_signal_wait_until_its_timeout(repo: Store) -> None:
    serve(repo, "builtin.noop")
    run_id = repo.submissions.submit_run(tenant="t", spec=spec(
        {"approve": {"wait": {"signal": "approval", "timeout_s": 3600}}})).run_id
    [w] = service.get_run(repo, run_id).nodes
    assert w.blocked.reason == "signal" and w.blocked.detail == "waits for the signal 'approval'"
    assert w.blocked.until is not None and w.blocked.until == w.wait_until


def test_a_finished_run_has_no_blocked_reason(repo: Store) -> None:
    serve(repo, "builtin.noop")
    run_id = repo.submissions.submit_run(tenant="t", spec=CHAIN).run_id
    repo.runs.cancel_run(run_id, None)
    run = service.get_run(repo, run_id)
    assert run.blocked is None and all(n.blocked is None for n in run.nodes)
