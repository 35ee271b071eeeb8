"""Workflow features on real worker processes (issue 8): if/else with a join, skip
propagation, map over 1,000 items and over nothing, priorities overtaking a backlog."""

from __future__ import annotations

import pytest

from tests.harness.procs import wait_for_run
from tests.harness.specs import spec

pytestmark = pytest.mark.e2e


def statuses(run):
    return {n.key: n.status for n in run.nodes}


def test_if_else_runs_one_branch_and_the_join_once(repo, fleet, sql) -> None:
    fleet.start(threads=4)
    wf = spec({
        "classify": {"executor": "test.route", "params": {"route": "billing"}},
        "billing": {"executor": "test.ident", "depends_on": ["classify"], "params": {"i": "b"},
                    "if": {"dep": "classify", "path": "route", "in": ["billing"]}},
        "support": {"executor": "test.ident", "depends_on": ["classify"], "params": {"i": "s"},
                    "if": {"dep": "classify", "path": "route", "in": ["support", "other"]}},
        "join": {"executor": "test.collect", "depends_on": ["billing", "support"]},
    }, name="route")
    run = wait_for_run(repo, repo.submissions.submit_run(tenant="t", spec=wf).run_id)
    assert run.status == "succeeded"
    assert statuses(run) == {"classify": "succeeded", "billing": "succeeded",
                             "support": "skipped", "join": "succeeded"}
    join = next(n for n in run.nodes if n.key == "join")
    assert join.outputs == {"n": 1, "keys": ["billing"]}  # only the branch taken
    started = sql.execute("SELECT count(*) AS n FROM dagq.run_events WHERE run_id = %s "
                          "AND node_key = 'join' AND type = 'node_started'",
                          (run.run_id,)).fetchone()["n"]
    assert started == 1


def test_skips_propagate_through_nodes_whose_deps_were_all_skipped(repo, fleet) -> None:
    fleet.start(threads=4)
    wf = spec({
        "classify": {"executor": "test.route", "params": {"route": "a"}},
        "b": {"executor": "builtin.noop", "depends_on": ["classify"],
              "if": {"dep": "classify", "path": "route", "in": ["b"]}},
        "after_b": {"executor": "builtin.noop", "depends_on": ["b"]},
        "after_after": {"executor": "builtin.noop", "depends_on": ["after_b"]},
        "mixed": {"executor": "builtin.noop", "depends_on": ["after_b", "classify"]},
    }, name="skips")
    run = wait_for_run(repo, repo.submissions.submit_run(tenant="t", spec=wf).run_id)
    assert run.status == "succeeded"
    assert statuses(run) == {"classify": "succeeded", "b": "skipped", "after_b": "skipped",
                             "after_after": "skipped", "mixed": "succeeded"}


def test_map_over_a_thousand_items_keeps_their_order(repo, fleet) -> None:
    fleet.start(threads=8)
    fleet.start(threads=8)
    wf = spec({
        "src": {"executor": "builtin.echo", "params": {"docs": list(range(1000))}},
        "each": {"executor": "test.ident", "depends_on": ["src"],
                 "map": {"dep": "src", "path": "params.docs"}},
        "gather": {"executor": "test.items", "depends_on": ["each"]},
    }, name="map1000")
    run = wait_for_run(repo, repo.submissions.submit_run(tenant="t", spec=wf).run_id, timeout=120)
    assert run.status == "succeeded", [(n.key, n.status, n.error) for n in run.nodes]
    each = next(n for n in run.nodes if n.key == "each")
    assert each.items == 1000 and len(each.outputs) == 1000
    gather = next(n for n in run.nodes if n.key == "gather")
    assert gather.outputs == {"items": list(range(1000))}


def test_map_over_an_empty_list_succeeds_at_once(repo, fleet) -> None:
    fleet.start(threads=2)
    wf = spec({
        "src": {"executor": "builtin.echo", "params": {"docs": []}},
        "each": {"executor": "test.ident", "depends_on": ["src"],
                 "map": {"dep": "src", "path": "params.docs"}},
        "gather": {"executor": "test.items", "depends_on": ["each"]},
    }, name="map0")
    run = wait_for_run(repo, repo.submissions.submit_run(tenant="t", spec=wf).run_id)
    assert run.status == "succeeded"
    gather = next(n for n in run.nodes if n.key == "gather")
    assert gather.outputs == {"items": []}


def test_a_high_priority_run_overtakes_a_backlog(repo, fleet, sql) -> None:
    backlog = spec({f"n{i}": {"executor": "builtin.sleep", "params": {"seconds": 0.01}}
                    for i in range(300)}, name="backlog")
    backlog_id = repo.submissions.submit_run(tenant="t", spec=backlog).run_id
    urgent = spec({"now": {"executor": "builtin.noop"}}, name="urgent")
    urgent_id = repo.submissions.submit_run(tenant="t", spec=urgent, priority=100).run_id
    fleet.start(threads=2)
    assert wait_for_run(repo, urgent_id).status == "succeeded"
    assert wait_for_run(repo, backlog_id, timeout=120).status == "succeeded"
    before = sql.execute("""
        SELECT count(*) AS n FROM dagq.node_tasks b, dagq.node_tasks u
        WHERE b.run_id = %s AND u.run_id = %s AND b.started_at < u.started_at""",
        (backlog_id, urgent_id)).fetchone()["n"]
    assert before <= 8, f"{before} backlog nodes started before the urgent one"
