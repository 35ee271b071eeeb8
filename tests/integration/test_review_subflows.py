"""Review findings on sub-workflow nodes (issue 17): each test failed before its fix."""

from __future__ import annotations

from dagq.config import Settings
from dagq.sweeper.passes import Sweeper
from tests.helpers import drive, spec
from tests.integration.test_subflows import (
    ECHO,
    children,
    fail_fetch,
    node,
    outer_with_sub,
    submit,
    summarize,
)


def test_a_retried_run_starts_a_new_child_for_its_failed_sub_workflow_node(
        repo, sql) -> None:
    """POST /v1/runs/{id}/retry: the failed sub-workflow node (attempts reset to 0)
    starts a new child run and the run can succeed; it used to stay waiting forever."""
    summarize(repo)
    run_id = submit(repo, outer_with_sub())
    drive(repo, {"fetch": fail_fetch})
    assert repo.runs.get_run(run_id).status == "failed"
    assert repo.runs.retry_run(run_id, "t") == "running"
    assert node(repo, run_id, "sub").status == "waiting"
    first, second = children(sql, run_id)
    assert (first["status"], second["status"]) == ("failed", "queued")
    drive(repo, ECHO)
    assert node(repo, run_id, "sub").status == "succeeded"
    assert repo.runs.get_run(run_id).status == "succeeded"


def test_a_retried_run_restarts_a_non_root_sub_workflow_node(repo, sql) -> None:
    summarize(repo)
    wf = spec({"a": {"executor": "builtin.echo"},
               "sub": {"workflow": {"name": "summarize"}, "depends_on": ["a"],
                       "max_attempts": 1}},
              name="outer2")
    run_id = submit(repo, wf)
    drive(repo, {"fetch": fail_fetch})
    assert repo.runs.get_run(run_id).status == "failed"
    repo.runs.retry_run(run_id, "t")
    drive(repo, ECHO)
    assert len(children(sql, run_id)) == 2
    assert repo.runs.get_run(run_id).status == "succeeded"




def test_a_healed_child_run_ends_its_sub_workflow_node(repo, sql) -> None:
    """The sweeper's heal pass finishes a child run whose finalisation was lost: its
    parent node must end too (it used to wait forever, holding the parent open)."""
    summarize(repo)
    run_id = submit(repo, outer_with_sub())
    [child] = children(sql, run_id)
    # Simulate a lost finalisation: the child's nodes are done, the child still runs.
    sql.execute("UPDATE dagq.node_tasks SET status = 'succeeded', outputs = '{\"s\": 1}', "
                "finished_at = now() WHERE run_id = %s", (child["id"],))
    sweeper = Sweeper(repo, Settings(worker_dead_after_s=30, retention_days=7))
    assert sweeper.heal() == {"healed": 1}
    assert repo.runs.get_run(child["id"]).status == "succeeded"
    assert node(repo, run_id, "sub").status == "succeeded"
    drive(repo, ECHO)
    assert repo.runs.get_run(run_id).status == "succeeded"
