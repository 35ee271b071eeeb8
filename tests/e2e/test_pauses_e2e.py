"""Pausing a queue mid-drain (issue 32, item 3), with real worker subprocesses: within
one lease cycle nothing new is started (neither by a consumer's lease nor by a
completion's hand-off of a DAG's next node); the nodes already started finish; resuming
(a NOTIFY on dagq_queued) drains the rest."""

from __future__ import annotations

import time

import pytest

from dagq.service import pauses
from dagq.store import Store
from tests.harness.procs import wait_for
from tests.harness.specs import spec

pytestmark = pytest.mark.e2e

# Each run: a chain a -> b -> c, so a completion releases the next node (the hand-off).
CHAIN = spec({
    "a": {"executor": "builtin.sleep", "params": {"seconds": 0.2}},
    "b": {"executor": "builtin.sleep", "params": {"seconds": 0.2}, "depends_on": ["a"]},
    "c": {"executor": "builtin.sleep", "params": {"seconds": 0.2}, "depends_on": ["b"]},
}, name="chain")
RUNS = 30
LEASE_CYCLE_S = 1.5  # a consumer polls at least once a second; its prefetched leases run


def started(sql) -> int:
    """Nodes ever leased (started, running or done)."""
    return sql.execute("SELECT count(*) AS n FROM dagq.node_tasks "
                       "WHERE started_at IS NOT NULL").fetchone()["n"]


def open_runs(sql) -> int:
    return sql.execute("SELECT count(*) AS n FROM dagq.runs WHERE status IN "
                       "('queued', 'running')").fetchone()["n"]


def idle(sql) -> bool:
    return sql.execute("SELECT count(*) AS n FROM dagq.node_tasks "
                       "WHERE status = 'running'").fetchone()["n"] == 0


def test_a_paused_queue_starts_nothing_new_and_resume_drains(repo: Store, fleet,
                                                             sql) -> None:
    fleet.start(threads=4)
    for _ in range(RUNS):
        repo.submissions.submit_run(tenant="t", spec=CHAIN)
    wait_for(lambda: started(sql) >= 10, 30, "the drain to be under way")
    pause, _ = pauses.pause(repo, None, kind="queue", name="default", reason="test")
    time.sleep(LEASE_CYCLE_S)  # leases committed before the pause may still start
    wait_for(lambda: idle(sql), 20, "the started nodes to finish")
    frozen = started(sql)
    time.sleep(3 * LEASE_CYCLE_S)
    assert started(sql) == frozen, "a node started in a paused queue"
    assert frozen < 3 * RUNS and open_runs(sql) > 0
    # the nodes released by completions wait queued (none was handed off)
    assert sql.execute("SELECT count(*) AS n FROM dagq.node_tasks WHERE status = 'queued' "
                       "AND node_key <> 'a'").fetchone()["n"] > 0
    resumed_at = time.monotonic()
    pauses.resume(repo, None, pause_id=pause.id)
    wait_for(lambda: open_runs(sql) == 0, 60, "the runs to finish after resume")
    assert started(sql) == 3 * RUNS
    assert time.monotonic() - resumed_at < 60


def test_a_paused_run_waits_while_others_drain(repo: Store, fleet, sql) -> None:
    fleet.start(threads=4)
    held = repo.submissions.submit_run(tenant="t", spec=CHAIN).run_id
    pauses.pause(repo, None, kind="run", name=str(held))
    others = [repo.submissions.submit_run(tenant="t", spec=CHAIN).run_id for _ in range(3)]
    wait_for(lambda: all(repo.runs.get_run(r, with_nodes=False).status == "succeeded"
                         for r in others), 30, "the other runs to finish")
    assert repo.runs.get_run(held, with_nodes=False).status == "queued"
    pauses.resume(repo, None, kind="run", name=str(held))
    wait_for(lambda: repo.runs.get_run(held, with_nodes=False).status == "succeeded", 30,
             "the resumed run to finish")
