"""Issue 12, fault 1, on real worker processes: once a run has failed (fail_fast), none
of its nodes starts again, whichever way the retry of a concurrent failure commits.

transform fails for good at once; flaky fails its first attempt at the same moment
(retryable, 0.5 s backoff); notify runs 3 s and is stopped at its heartbeat. Before the
fix, flaky's retry was still requeued in 13 of 20 such runs and started (even
succeeded) after run_failed.
"""

from __future__ import annotations

import pytest

from tests.harness.procs import wait_for, wait_for_run
from tests.harness.specs import spec

pytestmark = pytest.mark.e2e

RUNS, WAVE = 20, 4
ENV = {"DAGQ_TEST_EXECUTORS": "on"}


def workflow():
    return spec({
        "load": {"executor": "builtin.noop"},
        "transform": {"executor": "builtin.fail", "depends_on": ["load"],
                      "params": {"fatal": True}},
        "flaky": {"executor": "builtin.fail", "depends_on": ["load"],
                  "params": {"times": 1}, "backoff": {"initial_s": 0.5, "max_s": 0.5}},
        "notify": {"executor": "builtin.sleep", "depends_on": ["load"],
                   "params": {"seconds": 3}},
        "publish": {"executor": "builtin.noop",
                    "depends_on": ["transform", "flaky", "notify"]},
    }, name="fail-fast-race", fail_fast=True)


def problems(sql, run_id) -> list[str]:
    """What went wrong in one finished run (empty when nothing did)."""
    rows = sql.execute("SELECT id, node_key, type, attempt FROM dagq.run_events "
                       "WHERE run_id = %s ORDER BY id", (run_id,)).fetchall()
    found: list[str] = []
    ends = [r for r in rows if r["node_key"] is None and r["type"] in (
        "run_failed", "run_succeeded", "run_partial_succeeded", "run_cancelled")]
    if [r["type"] for r in ends] != ["run_failed"]:
        return [f"terminal events {[r['type'] for r in ends]}"]
    end = ends[0]["id"]
    started_at = {(r["node_key"], r["attempt"]): r["id"] for r in rows
                  if r["type"] == "node_started"}
    for r in rows:
        if r["type"] in ("node_started", "node_retry") and r["id"] > end:
            found.append(f"{r['type']} of {r['node_key']} (try {r['attempt']}) after "
                         "run_failed")
        if r["type"] == "node_succeeded" and started_at.get(
                (r["node_key"], r["attempt"]), end + 1) > end:
            found.append(f"{r['node_key']} succeeded on a try started after run_failed")
    return found


def test_no_node_starts_after_its_run_failed_fast(repo, fleet, sql) -> None:
    fleet.start(threads=4, **ENV)
    fleet.start(threads=4, **ENV)
    wf = workflow()
    report: dict[str, list[str]] = {}
    for _ in range(RUNS // WAVE):
        wave = [repo.submissions.submit_run(tenant="t", spec=wf).run_id for _ in range(WAVE)]
        for run_id in wave:
            run = wait_for_run(repo, run_id, timeout=90)
            assert run.status == "failed", fleet.logs()
            report[str(run_id)] = problems(sql, run_id)
    bad = {run_id: found for run_id, found in report.items() if found}
    assert bad == {}, f"{len(bad)} of {RUNS} runs started nodes after failing: {bad}"
    # Nothing is left behind either: every node ends (notify at its next heartbeat),
    # and every run counts them all.
    wait_for(lambda: sql.execute("""
        SELECT count(*) AS n FROM dagq.node_tasks
        WHERE status IN ('pending', 'queued', 'running')""").fetchone()["n"] == 0,
             60, "every node of the failed runs to end")
    uncounted = sql.execute("SELECT count(*) AS n FROM dagq.runs WHERE nodes_remaining <> 0"
                            ).fetchone()["n"]
    assert uncounted == 0
