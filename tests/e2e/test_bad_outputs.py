"""Outputs Postgres cannot store, with real workers (issue 12, faults 4 and 5).

A NUL character (in a value or a key) or a lone surrogate used to pass the worker's
check and fail the whole group commit: the node ended with a misleading LeaseExpired
and unrelated nodes of the same batch ran again. A 5,000-deep output raised
RecursionError past the check, and the node stayed running (heartbeated) forever. Now
the worker checks outputs as the API checks input, and fails just that node with
OutputError at once.
"""

from __future__ import annotations

import pytest

from tests.harness.procs import wait_for_run
from tests.harness.specs import spec

pytestmark = pytest.mark.e2e

MODULES = {"DAGQ_ACTOR_MODULES": "tests.e2e.sample_executors,tests.e2e.bad_outputs"}
PROBLEMS = {"nul": "NUL", "nul_key": "NUL", "surrogate": "unpaired surrogate"}


def fan(bad: str | None = None):
    nodes = {"root": {"executor": "builtin.noop"}}
    nodes |= {f"m{i}": {"executor": "builtin.echo", "depends_on": ["root"]} for i in range(4)}
    if bad:
        nodes["m2"] = {"executor": "test.bad_output", "depends_on": ["root"],
                       "params": {"kind": bad}}
    nodes["agg"] = {"executor": "builtin.merge", "depends_on": [f"m{i}" for i in range(4)]}
    return spec(nodes, name=f"fan-{bad or 'ok'}")


def test_an_unstorable_output_fails_only_its_node_and_nothing_runs_again(
        repo, fleet, sql) -> None:
    good = [repo.submissions.submit_run(tenant="t", spec=fan()).run_id for _ in range(60)]
    bad = {kind: repo.submissions.submit_run(
        tenant="t", spec=fan(kind)).run_id for kind in PROBLEMS}
    fleet.start_sweeper()  # would take back leases lost with a failed group commit
    for _ in range(2):
        fleet.start(threads=4, **MODULES)

    for run_id in good:
        assert wait_for_run(repo, run_id, timeout=120).status == "succeeded", fleet.logs()
    for kind, run_id in bad.items():
        run = wait_for_run(repo, run_id, timeout=120)
        assert run.status == "failed"
        node = next(n for n in run.nodes if n.key == "m2")
        assert node.status == "failed" and node.attempts == 1, node
        assert node.error["type"] == "OutputError", node.error
        assert PROBLEMS[kind] in node.error["message"], node.error
    reruns = sql.execute("""
        SELECT run_id, node_key, count(*) AS starts FROM dagq.run_events
        WHERE type = 'node_started' GROUP BY run_id, node_key HAVING count(*) > 1
    """).fetchall()
    assert reruns == [], fleet.logs()
    expired = sql.execute("SELECT count(*) AS n FROM dagq.run_events "
                          "WHERE type = 'node_lease_expired'").fetchone()["n"]
    assert expired == 0
    assert "could not record" not in fleet.logs()


def test_a_deeply_nested_output_fails_the_node_at_once_and_releases_its_lease(
        repo, fleet, sql) -> None:
    wf = spec({"deep": {"executor": "test.bad_output", "params": {"kind": "deep"}},
               "ok": {"executor": "builtin.noop"}}, name="deep")
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    fleet.start(threads=2, **MODULES)

    run = wait_for_run(repo, run_id, timeout=30)  # before: running (heartbeated) forever
    assert run.status == "failed"
    node = next(n for n in run.nodes if n.key == "deep")
    assert node.status == "failed" and node.attempts == 1, node
    assert node.error["type"] == "OutputError", node.error
    assert "nested deeper than 64 levels" in node.error["message"], node.error
    held = sql.execute("SELECT count(*) AS n FROM dagq.running_nodes WHERE run_id = %s",
                       [run_id]).fetchone()["n"]
    assert held == 0
    assert "found a bug in Dramatiq" not in fleet.logs()
