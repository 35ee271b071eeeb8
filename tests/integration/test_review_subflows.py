"""Review findings on sub-workflow nodes (issue 17): each test failed before its fix."""

from __future__ import annotations

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
    assert repo.get_run(run_id).status == "failed"
    assert repo.retry_run(run_id, "t") == "running"
    assert node(repo, run_id, "sub").status == "waiting"
    first, second = children(sql, run_id)
    assert (first["status"], second["status"]) == ("failed", "queued")
    drive(repo, ECHO)
    assert node(repo, run_id, "sub").status == "succeeded"
    assert repo.get_run(run_id).status == "succeeded"


def test_a_retried_run_restarts_a_non_root_sub_workflow_node(repo, sql) -> None:
    summarize(repo)
    wf = spec({"a": {"executor": "builtin.echo"},
               "sub": {"workflow": {"name": "summarize"}, "depends_on": ["a"],
                       "max_attempts": 1}},
              name="outer2")
    run_id = submit(repo, wf)
    drive(repo, {"fetch": fail_fetch})
    assert repo.get_run(run_id).status == "failed"
    repo.retry_run(run_id, "t")
    drive(repo, ECHO)
    assert len(children(sql, run_id)) == 2
    assert repo.get_run(run_id).status == "succeeded"


