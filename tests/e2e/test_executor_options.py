"""Executor options on real workers (issue 27 points 2 and 8): a registered workflow's
node, and a sub-workflow's child node, run on the executor's declared queue, as many
attempts as it declares, with its timeout."""

from __future__ import annotations

import pytest

from dagq import service
from dagq.store import Store
from tests.harness.procs import wait_for, wait_for_run

pytestmark = pytest.mark.e2e

MODULE = {"DAGQ_ACTOR_MODULES": "tests.e2e.queued_executors"}
FLAKY = {"name": "flaky", "nodes": {"f": {"executor": "test.llm_flaky",
                                          "backoff": {"initial_s": 0.05, "max_s": 0.1}}}}


def started_by(sql, run_id) -> list[int]:
    """The pid of the worker that started each attempt."""
    rows = sql.execute("SELECT data FROM dagq.run_events WHERE run_id = %s AND "
                       "type = 'node_started' ORDER BY id", (run_id,)).fetchall()
    return [int(row["data"]["worker"].split(":")[1]) for row in rows]


def test_registered_nodes_run_their_executors_options(repo: Store, fleet, sql) -> None:
    fleet.start(queues="default", **MODULE)
    llm = fleet.start(queues="llm", **MODULE)
    wait_for(lambda: "test.llm_flaky" in repo.fleet.known_executors(), 30, "the executor")
    service.register_workflow(repo, FLAKY)
    direct_id = service.submit(repo, tenant="t", workflow="flaky").run_id
    parent_id = service.submit(repo, tenant="t", workflow={"name": "outer", "nodes": {
        "sub": {"workflow": {"name": "flaky"}, "max_attempts": 1}}}).run_id
    [child] = sql.execute("SELECT id FROM dagq.runs WHERE parent_run_id = %s",
                          (parent_id,)).fetchall()
    for run_id in (direct_id, child["id"]):
        run = wait_for_run(repo, run_id)
        [node] = run.nodes
        assert (run.status, node.attempts, node.max_attempts) == ("failed", 2, 2), fleet.logs()
        assert started_by(sql, run_id) == [llm.pid, llm.pid]
        row = sql.execute("SELECT queue, timeout_s FROM dagq.node_tasks WHERE run_id = %s",
                          (run_id,)).fetchone()
        assert (row["queue"], row["timeout_s"]) == ("llm", 120.0)
    assert wait_for_run(repo, parent_id).status == "failed"
