"""Stored streamed output is bounded with real workers (issue 27): a node that streams
and fails keeps its current attempt whole and a tail of its earlier ones, and a run
over DAGQ_MAX_STREAM_BYTES_PER_RUN has its next stream() refused in the executor."""

from __future__ import annotations

import pytest

from dagq import service
from dagq.store import Store
from tests.harness.procs import WorkerFleet, wait_for, wait_for_run

pytestmark = pytest.mark.e2e


def test_failed_attempts_keep_a_tail_and_the_run_cap_reaches_the_executor(
        fleet: WorkerFleet, repo: Store, sql) -> None:
    fleet.start(threads=2, DAGQ_STREAM_TAIL_BYTES="3000",
                DAGQ_MAX_STREAM_BYTES_PER_RUN="150000")
    wait_for(lambda: sql.execute("SELECT 1 FROM dagq.executors WHERE name = %s",
                                 ("test.stream_then_fail",)).fetchone(), 60, "the worker")
    run_id = service.submit(repo, tenant="t", workflow={
        "name": "big", "nodes": {"llm": {
            "executor": "test.stream_then_fail", "params": {"chunks": 100, "size": 1000},
            "backoff": {"initial_s": 0.1}}}}).run_id
    run = wait_for_run(repo, run_id)
    assert run.status == "succeeded", run
    outputs = run.nodes[0].outputs
    assert "DAGQ_MAX_STREAM_BYTES_PER_RUN" in outputs["refused"]
    per_attempt = {r["attempt"]: r["bytes"] for r in sql.execute(
        "SELECT attempt, sum(octet_length(text)) AS bytes FROM dagq.node_stream "
        "WHERE run_id = %s GROUP BY attempt", (run_id,)).fetchall()}
    assert per_attempt[1] == per_attempt[2] == 3000  # was 100,000 each: their tails
    assert 140_000 <= per_attempt[3] <= 150_000 - 6000  # the current one, up to the cap
    counted = sql.execute("SELECT bytes FROM dagq.stream_bytes_by_run WHERE run_id = %s",
                          (run_id,)).fetchone()["bytes"]
    assert counted == sum(per_attempt.values()) <= 150_000
