"""`max_parallel` holds fleet-wide: two worker processes with 8 threads between them run
a 20-item map of sleeps at most 3 at a time (counted from the run's events)."""

from __future__ import annotations

import pytest

from dagq.store import Store
from tests.harness.procs import WorkerFleet, wait_for_run
from tests.harness.specs import spec

pytestmark = pytest.mark.e2e


def test_max_parallel_is_never_exceeded_by_two_workers(fleet: WorkerFleet, repo: Store,
                                                       sql) -> None:
    fleet.start(threads=4)
    fleet.start(threads=4)
    wf = spec({
        "src": {"executor": "builtin.echo", "params": {"items": list(range(20))}},
        "each": {"executor": "builtin.sleep", "depends_on": ["src"], "params": {"seconds": 0.2},
                 "map": {"dep": "src", "path": "params.items", "max_parallel": 3}},
    })
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    assert wait_for_run(repo, run_id, timeout=120).status == "succeeded"
    events = sql.execute("SELECT node_key, type FROM dagq.run_events WHERE run_id = %s "
                         "AND node_key LIKE 'each[%%' ORDER BY id", (run_id,)).fetchall()
    running, peak = 0, 0
    for e in events:
        running += {"node_started": 1, "node_succeeded": -1, "node_failed": -1,
                    "node_retry": -1}.get(e["type"], 0)  # (an expired lease: node_retry)
        peak = max(peak, running)
    assert peak == 3, events  # reached, and never more
    assert sum(e["type"] == "node_succeeded" for e in events) == 20


def test_max_parallel_holds_for_a_map_over_a_sub_workflow(fleet: WorkerFleet, repo: Store,
                                                          sql) -> None:
    """Each item is a child run (a sleep); at most 3 children are open at once, counted
    from the parent's events (an item's node_waiting starts its child, its end ends it)."""
    from dagq import service

    fleet.start(threads=4)
    fleet.start(threads=4)
    service.register_workflow(repo, {"name": "nap", "nodes": {
        "sleep": {"executor": "builtin.sleep", "params": {"seconds": 0.2}}}})
    wf = service.pin_subworkflows(spec({
        "src": {"executor": "builtin.echo", "params": {"items": list(range(12))}},
        "each": {"workflow": {"name": "nap"}, "depends_on": ["src"],
                 "map": {"dep": "src", "path": "params.items", "max_parallel": 3}},
    }), repo)
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    assert wait_for_run(repo, run_id, timeout=120).status == "succeeded"
    events = sql.execute("SELECT node_key, type FROM dagq.run_events WHERE run_id = %s "
                         "AND node_key LIKE 'each[%%' ORDER BY id", (run_id,)).fetchall()
    running, peak = 0, 0
    for e in events:
        running += {"node_waiting": 1, "node_succeeded": -1, "node_failed": -1}.get(
            e["type"], 0)
        peak = max(peak, running)
    assert peak == 3, events
    assert sum(e["type"] == "node_succeeded" for e in events) == 12
    assert len(repo.runs.get_run(run_id).children) == 12
