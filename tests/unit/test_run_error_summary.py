"""RunErrorSummary: what a list of runs says about a run's error (dagq.api.schemas)."""

from __future__ import annotations

from dagq.api.schemas import RunErrorSummary, RunSummary


def test_a_stored_error_becomes_its_node_type_and_first_line() -> None:
    summary = RunErrorSummary.of({"node": "b", "type": "KeyError", "message":
                                  "\n  'user_id'  \n  File \"x.py\"", "traceback": "..."})
    assert summary == RunErrorSummary(node="b", type="KeyError", message="'user_id'")


def test_no_error_and_odd_shapes() -> None:
    assert RunErrorSummary.of(None) is None
    assert RunErrorSummary.of("boom\nmore") == RunErrorSummary(message="boom")
    assert RunErrorSummary.of({"node": 3, "type": None, "message": {"a": 1}}) == \
        RunErrorSummary(node=None, type=None, message="{'a': 1}")
    assert RunErrorSummary.of({}) == RunErrorSummary(message="")
    same = RunErrorSummary(node="n", message="m")
    assert RunErrorSummary.of(same) is same


def test_a_long_line_is_cut_with_an_ellipsis() -> None:
    assert RunErrorSummary.of({"message": "y" * 300}).message == "y" * 300
    cut = RunErrorSummary.of({"message": "y" * 301}).message
    assert cut == "y" * 299 + "…" and len(cut) == 300


def test_run_summary_summarises_a_whole_error() -> None:
    fields = {"run_id": "00000000-0000-0000-0000-000000000001", "tenant": "t",
              "workflow": "w", "workflow_version": None, "event_key": None,
              "status": "failed", "priority": 0, "nodes_total": 1, "nodes_remaining": 0,
              "created_at": "2026-01-01T00:00:00Z", "started_at": None, "finished_at": None}
    run = RunSummary.model_validate({**fields, "error": {
        "node": "a", "type": "E", "message": "first\nsecond", "traceback": "T"}})
    assert run.error == RunErrorSummary(node="a", type="E", message="first")
    assert RunSummary.model_validate(fields).error is None
