"""A cancelled run's running nodes are interrupted at once, not at their worker's next
heartbeat (issue 27, point 8): the cancel's transaction notifies `dagq_cancelled` after
commit, and a worker holding one of the run's nodes checks its leases right away.

The workers here heartbeat every 30 s (their first beat is at start, before anything is
leased), so a node stopped within a few seconds was stopped by the notification."""

from __future__ import annotations

import time

import pytest

from dagq.store import Store
from tests.harness.procs import wait_for
from tests.harness.specs import spec

pytestmark = pytest.mark.e2e

SLOW_HEARTBEAT = {"DAGQ_HEARTBEAT_S": "30", "DAGQ_LEASE_TTL_S": "120"}
# Well under the 30 s heartbeat; a notified worker stops the node in well under 1 s.
STOP_WITHIN_S = 3.0


def node_status(repo: Store, run_id, key: str = "long") -> str:
    return next(n.status for n in repo.runs.get_run(run_id).nodes if n.key == key)


def running(repo: Store, run_id) -> None:
    wait_for(lambda: node_status(repo, run_id) == "running", 20, "the node to run")
    time.sleep(0.5)  # (the executor is well inside its sleep)


def test_a_cancel_interrupts_a_running_node_at_once(repo: Store, fleet, sql) -> None:
    fleet.start(threads=2, **SLOW_HEARTBEAT)
    wf = spec({"long": {"executor": "builtin.sleep", "params": {"seconds": 60}}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    running(repo, run_id)
    cancelled_at = time.monotonic()
    repo.runs.cancel_run(run_id, "t")
    wait_for(lambda: node_status(repo, run_id) == "cancelled", STOP_WITHIN_S,
             "the running node to be interrupted by the cancel notification")
    assert time.monotonic() - cancelled_at < STOP_WITHIN_S
    node = repo.runs.get_run(run_id).nodes[0]
    assert node.error["type"] == "Cancelled", node.error  # (the executor was interrupted)


def test_cancel_running_of_a_concurrency_key_interrupts_the_replaced_run(
        repo: Store, fleet) -> None:
    fleet.start(threads=2, **SLOW_HEARTBEAT)
    wf = spec({"long": {"executor": "builtin.sleep", "params": {"seconds": 60}}},
              name="chat", concurrency={"key": "inputs.conversation", "limit": 1,
                                        "on_limit": "cancel_running"})
    first = repo.submissions.submit_run(tenant="t", spec=wf, inputs={"conversation": "c1"}).run_id
    running(repo, first)
    replaced_at = time.monotonic()
    second = repo.submissions.submit_run(tenant="t", spec=wf, inputs={"conversation": "c1"}).run_id
    assert repo.runs.get_run(first).status == "cancelled"
    wait_for(lambda: node_status(repo, first) == "cancelled", STOP_WITHIN_S,
             "the replaced run's running node to be interrupted")
    assert time.monotonic() - replaced_at < STOP_WITHIN_S
    wait_for(lambda: node_status(repo, second) == "running", 20, "the new run to start")


def test_a_cancel_of_another_run_leaves_running_nodes_alone(repo: Store, fleet) -> None:
    fleet.start(threads=2, **SLOW_HEARTBEAT)
    wf = spec({"long": {"executor": "builtin.sleep", "params": {"seconds": 60}}})
    kept = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    other = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    running(repo, kept)
    running(repo, other)
    repo.runs.cancel_run(other, "t")
    wait_for(lambda: node_status(repo, other) == "cancelled", STOP_WITHIN_S, "the cancel")
    assert node_status(repo, kept) == "running"
