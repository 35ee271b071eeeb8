"""A worker paused (SIGSTOP: a VM pause, a long GC, a debugger) for longer than its
lease, then resumed (issue 12, fault 2).

Timings as in the issue: lease TTL 3 s, heartbeat 1 s, a 6 s node, the worker stopped
1.5 s into it for 6 s. The sweeper takes the lease back meanwhile; when the worker
resumes it leases the node again. Before the fix the lease book was keyed by node id:
the old attempt's late outcome removed the new attempt's lease, which was then no longer
heartbeated and expired too, attempt after attempt, until the run failed LeaseExpired.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.harness.procs import wait_for, wait_for_run
from tests.harness.specs import spec

pytestmark = pytest.mark.chaos

PAUSABLE = {"DAGQ_LEASE_TTL_S": "3", "DAGQ_HEARTBEAT_S": "1"}


def test_a_worker_paused_past_its_lease_completes_a_later_attempt(repo, fleet, sql) -> None:
    fleet.start_sweeper(DAGQ_WORKER_DEAD_AFTER_S="30")  # leases expire by their TTL
    worker = fleet.start(threads=2, **PAUSABLE)
    wf = spec({"nap": {"executor": "builtin.sleep", "params": {"seconds": 6},
                       "max_attempts": 5}}, name="pause")
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id

    def started() -> bool:
        return sql.execute("SELECT 1 FROM dagq.run_events WHERE run_id = %s AND type = "
                           "'node_started'", [run_id]).fetchone() is not None

    wait_for(started, 60, "the node to start")
    time.sleep(1.5)  # the pause itself is the scenario: real time, not data
    worker.send_signal(signal.SIGSTOP)
    try:
        time.sleep(6)
    finally:
        worker.send_signal(signal.SIGCONT)

    run = wait_for_run(repo, run_id, timeout=120)
    events = sql.execute("""
        SELECT type, attempt, data FROM dagq.run_events
        WHERE run_id = %s AND node_key = 'nap' ORDER BY id""", [run_id]).fetchall()
    story = [(e["type"], e["attempt"]) for e in events]
    assert run.status == "succeeded", (story, fleet.logs())
    assert story.count(("node_lease_expired", 1)) == 1, story  # the pause cost attempt 1
    succeeded = [e["attempt"] for e in events if e["type"] == "node_succeeded"]
    assert len(succeeded) == 1 and succeeded[0] >= 2, story
    # Every later attempt was heartbeated to its end: no other lease expired.
    assert [a for t, a in story if t == "node_lease_expired"] == [1], story
    assert worker.poll() is None  # the same worker, alive throughout
