"""Rerun from a node on a real Postgres: the copied nodes end at once (never leased:
executions are counted by driving the store), the rest run again, overrides replace an
upstream output, a rerun of a rerun, map and wait nodes, and every refusal writing
nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dagq.errors import Conflict, InvalidRequest, NotFound
from dagq.spec.workflow import parse_spec
from dagq.store import Store
from tests.harness.drive import drive
from tests.harness.procs import ROOT
from tests.harness.specs import spec


def chain() -> Any:
    """a -> b -> c, with an unrelated branch x, and c also reading x."""
    return spec({
        "a": {"executor": "builtin.echo"},
        "b": {"executor": "builtin.echo", "depends_on": ["a"]},
        "c": {"executor": "builtin.merge", "depends_on": ["b", "x"]},
        "x": {"executor": "builtin.echo"},
    }, name="chain", fail_fast=False, defaults={"max_attempts": 1})


def outputs_of(repo: Store, run_id) -> dict[str, Any]:
    return {n.key: (n.status, n.outputs) for n in repo.runs.get_run(run_id).nodes}


def counts(sql) -> dict[str, int]:
    return sql.execute("SELECT (SELECT count(*) FROM dagq.runs) AS runs, "
                       "(SELECT count(*) FROM dagq.node_tasks) AS nodes, "
                       "(SELECT count(*) FROM dagq.run_events) AS events").fetchone()


def finished_run(repo: Store, fail: str | None = None) -> Any:
    run_id = repo.submissions.submit_run(tenant="t", spec=chain(), inputs={"q": 1}).run_id

    def boom(payload: dict[str, Any]) -> Any:
        raise RuntimeError("broken")

    drive(repo, {fail: boom} if fail else {}, max_rounds=50)
    return run_id


def test_rerun_copies_upstream_and_runs_the_rest_once(repo: Store, sql) -> None:
    first = finished_run(repo)
    assert repo.runs.get_run(first).status == "succeeded"
    result = repo.reruns.rerun_run(first, "t", from_=["b"])
    assert result.rerun_of == first
    run = repo.runs.get_run(result.run_id)
    assert run.rerun_of == first and run.status == "running"
    assert run.inputs == {"q": 1} and run.workflow == "chain"
    before = outputs_of(repo, first)
    now = outputs_of(repo, result.run_id)
    assert now["a"] == before["a"] and now["x"] == before["x"]
    assert now["b"][0] == "queued" and now["c"][0] == "pending"
    executed = drive(repo)
    assert executed == ["b", "c"]  # a and x were copied, never executed
    assert repo.runs.get_run(result.run_id).status == "succeeded"
    events = sql.execute("SELECT node_key, type, data FROM dagq.run_events WHERE run_id = %s "
                         "ORDER BY id", (result.run_id,)).fetchall()
    copied = {e["node_key"]: e for e in events if e["data"].get("copied_from")}
    assert set(copied) == {"a", "x"}
    assert all(e["type"] == "node_succeeded" for e in copied.values())
    started = [e["node_key"] for e in events if e["type"] == "node_started"]
    assert sorted(started) == ["b", "c"]
    assert events[0]["type"] == "run_queued" and events[-1]["type"] == "run_succeeded"
    assert [e["type"] for e in events].count("run_started") == 1


def test_rerun_with_an_output_override_and_new_inputs(repo: Store) -> None:
    first = finished_run(repo, fail="c")
    assert repo.runs.get_run(first).status == "partial_succeeded"
    seen: list[Any] = []

    def record(payload: dict[str, Any]) -> Any:
        seen.append(payload)
        return {"merged": sorted(payload["deps"])}

    result = repo.reruns.rerun_run(first, "t", from_=["c"], outputs={"b": {"patched": True}},
                                   inputs={"q": 2})
    assert drive(repo, {"c": record}) == ["c"]
    assert seen[0]["deps"]["b"] == {"patched": True} and seen[0]["run"] == {"q": 2}
    assert repo.runs.get_run(result.run_id).status == "succeeded"
    # a rerun of the rerun, from a root: everything runs again but x
    again = repo.reruns.rerun_run(result.run_id, "t", from_=["a"])
    assert sorted(drive(repo)) == ["a", "b", "c"]
    final = repo.runs.get_run(again.run_id)
    assert final.status == "succeeded" and final.rerun_of == result.run_id


def test_skipped_nodes_copy_as_skipped_and_maps_and_waits_copy_their_outputs(
        repo: Store, sql) -> None:
    wf = spec({
        "src": {"executor": "builtin.echo", "params": {"items": [1, 2], "route": "a"}},
        "each": {"executor": "builtin.echo", "depends_on": ["src"],
                 "map": {"dep": "src", "path": "params.items"}},
        "pause": {"wait": {"seconds": 0}, "depends_on": ["src"]},
        "never": {"executor": "builtin.noop", "depends_on": ["src"],
                  "if": {"dep": "src", "path": "params.route", "in": ["b"]}},
        "end": {"executor": "builtin.merge", "depends_on": ["each", "pause", "never"]},
    }, name="mixed")
    first = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    echo = {"builtin.echo": lambda payload: payload}
    drive(repo, echo)
    sql.execute("UPDATE dagq.node_tasks SET wait_until = now() - interval '1 s' "
                "WHERE run_id = %s AND status = 'waiting'", (first,))
    repo.maintenance.fire_due_waits()
    drive(repo, echo)
    before = outputs_of(repo, first)
    assert repo.runs.get_run(first).status == "succeeded", before
    result = repo.reruns.rerun_run(first, "t", from_=["end"])
    now = outputs_of(repo, result.run_id)
    assert now["never"] == ("skipped", None)
    assert now["each"] == before["each"] and now["pause"] == before["pause"]
    assert drive(repo) == ["end"]  # no map item, no wait ran again
    assert repo.runs.get_run(result.run_id).status == "succeeded"
    # from the map node: it expands again over the copied source
    result = repo.reruns.rerun_run(first, "t", from_=["each"])
    assert sorted(drive(repo, echo)) == ["each[0]", "each[1]", "end"]
    # from the `if` node: its condition is checked again at once (skipped again)
    result = repo.reruns.rerun_run(first, "t", from_=["never"])
    assert outputs_of(repo, result.run_id)["never"] == ("skipped", None)
    assert drive(repo, echo) == ["end"]
    assert repo.runs.get_run(result.run_id).status == "succeeded"


BAD_BODIES = [
    ({"from_": []}, "non-empty list"),
    ({"from_": "b"}, "non-empty list"),
    ({"from_": ["nope"]}, "unknown node"),
    ({"from_": ["b"], "outputs": {"c": {}}}, "only name nodes that are copied"),
    ({"from_": ["b"], "outputs": {"zzz": {}}}, "only name nodes that are copied"),
    ({"from_": ["b"], "outputs": []}, "must be a JSON object"),
    ({"from_": ["b"], "outputs": {"a": 3}}, "must be JSON objects"),
    ({"from_": ["c"]}, "did not succeed"),  # b failed in the original
]


def test_bad_bodies_are_refused_and_write_nothing(repo: Store, sql) -> None:
    first = finished_run(repo, fail="b")
    before = counts(sql)
    for body, message in BAD_BODIES:
        with pytest.raises(InvalidRequest, match=message):
            repo.reruns.rerun_run(first, "t", **body)
    assert counts(sql) == before
    # with b's outputs given, c can rerun although b failed
    assert repo.reruns.rerun_run(first, "t", from_=["c"], outputs={"b": {}}).rerun_of == first


def test_open_runs_conflict_and_other_tenants_do_not_see_the_run(repo: Store, sql) -> None:
    running = repo.submissions.submit_run(tenant="t", spec=chain()).run_id
    before = counts(sql)
    with pytest.raises(Conflict, match="only a finished run"):
        repo.reruns.rerun_run(running, "t", from_=["a"])
    drive(repo)
    with pytest.raises(NotFound):
        repo.reruns.rerun_run(running, "other", from_=["a"])
    assert counts(sql)["runs"] == before["runs"]
    assert repo.reruns.rerun_run(running, None, from_=["a"]).rerun_of == running  # admin


def test_the_example_fails_then_reruns_with_a_patched_upstream_output(repo: Store) -> None:
    example = parse_spec(json.loads((ROOT / "examples" / "rerun.json").read_text()))
    echo = {"builtin.echo": lambda payload: payload}
    first = repo.submissions.submit_run(tenant="t", spec=example).run_id
    assert drive(repo, echo) == ["retrieve"]
    assert repo.runs.get_run(first).status == "failed"
    fixed = {"params": {"docs": ["a", "b"]}}
    rerun = repo.reruns.rerun_run(first, "t", from_=["per_doc"], outputs={"retrieve": fixed})
    assert drive(repo, echo) == ["per_doc[0]", "per_doc[1]", "report"]
    run = repo.runs.get_run(rerun.run_id)
    assert run.status == "succeeded"
    assert [item["item"] for item in outputs_of(repo, rerun.run_id)["per_doc"][1]] == ["a", "b"]
