"""Resuming only what failed (issue 34, item 3), on a real Postgres: a retry of a map
node's failed items only (its succeeded items keep their outputs and do not run again),
and resolving a failed or cancelled node with outputs a person gives."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from dagq import service
from dagq.errors import Conflict, InvalidRequest, NotFound
from dagq.service import resolve_node, retry_run
from dagq.store import Store
from tests.harness.drive import complete, drive
from tests.harness.specs import spec


def mapped(width: int, *, fail_fast: bool = True, **options: Any):
    return spec({
        "src": {"executor": "builtin.echo", "params": {"items": list(range(width))}},
        "each": {"executor": "builtin.noop", "depends_on": ["src"], "max_attempts": 1,
                 "map": {"dep": "src", "path": "params.items", **options}},
        "after": {"executor": "builtin.merge", "depends_on": ["each"]},
        "other": {"executor": "builtin.echo"},
    }, fail_fast=fail_fast)


def src(payload: dict[str, Any]) -> dict[str, Any]:
    return {"params": payload["params"]}


def items_of(sql, run_id) -> dict[str, dict[str, Any]]:
    rows = sql.execute("SELECT node_key, status, attempts, version, outputs FROM "
                       "dagq.node_tasks WHERE run_id = %s AND parent_id IS NOT NULL",
                       (run_id,)).fetchall()
    return {r["node_key"]: r for r in rows}


def node(repo: Store, run_id, key: str):
    return next(n for n in repo.runs.get_run(run_id).nodes if n.key == key)


def events(sql, run_id, type_: str | None = None) -> list[dict[str, Any]]:
    return sql.execute("SELECT node_key, type, data FROM dagq.run_events WHERE run_id = %s "
                       "AND (%s::text IS NULL OR type = %s) ORDER BY id",
                       (run_id, type_, type_)).fetchall()


def run_map_failing(repo: Store, width: int, bad: set[int], **options: Any) -> uuid.UUID:
    """A map of `width` items whose items in `bad` fail for good; the run is over."""
    run_id = repo.submissions.submit_run(tenant="t", spec=mapped(width, **options)).run_id

    def each(payload: dict[str, Any]) -> dict[str, Any]:
        if payload["item"] in bad:
            raise RuntimeError(f"item {payload['item']} broke")
        return {"v": payload["item"] * 10}

    # One batch leases every item: those after the failing one still run to the end
    # (a failed map does not stop its running items) and keep their outputs.
    drive(repo, {"src": src, "builtin.noop": each}, batch=64)
    return run_id


def test_a_retry_of_failed_items_runs_only_those_and_keeps_the_others(repo: Store,
                                                                      sql) -> None:
    run_id = run_map_failing(repo, 10, {4})
    assert repo.runs.get_run(run_id).status == "failed"
    before = items_of(sql, run_id)
    assert sum(r["status"] == "succeeded" for r in before.values()) == 9
    assert node(repo, run_id, "each").items_succeeded == 9
    assert node(repo, run_id, "src").items_succeeded is None  # not a map node

    assert retry_run(repo, run_id, None, items="failed") == "running"
    each = node(repo, run_id, "each")
    assert (each.status, each.items, each.items_done, each.error) == ("running", 10, 9, None)
    assert node(repo, run_id, "after").status == "pending"
    after_reset = items_of(sql, run_id)
    for key, row in before.items():  # the kept items are not touched at all
        if row["status"] == "succeeded":
            assert after_reset[key] == row
    assert (after_reset["each[4]"]["status"], after_reset["each[4]"]["attempts"]) == \
        ("queued", 0)

    ran = drive(repo, {"src": src, "builtin.noop": lambda p: {"v": p["item"] * 10}})
    assert sorted(ran) == ["after", "each[4]"]
    run = repo.runs.get_run(run_id)
    assert run.status == "succeeded"
    assert node(repo, run_id, "each").outputs == [{"v": i * 10} for i in range(10)]
    assert node(repo, run_id, "each").items_succeeded == 10
    [queued] = [e for e in events(sql, run_id, "node_queued") if e["data"].get("items_kept")]
    assert queued["data"] == {"retry": True, "items": 1, "items_kept": 9}


def test_a_retry_of_failed_items_keeps_the_map_window(repo: Store, sql) -> None:
    """max_parallel 2: the failed and cancelled items restart two at a time."""
    run_id = repo.submissions.submit_run(
        tenant="t", spec=mapped(6, max_parallel=2)).run_id
    drive(repo, {"src": src, "builtin.noop": lambda p: (_ for _ in ()).throw(
        RuntimeError("no")) if p["item"] == 1 else {"v": p["item"]}})
    assert repo.runs.get_run(run_id).status == "failed"
    statuses = {k: r["status"] for k, r in items_of(sql, run_id).items()}
    assert statuses["each[0]"] == "succeeded" and statuses["each[1]"] == "failed"
    retry_run(repo, run_id, None, items="failed")
    counts: dict[str, int] = {}
    for row in items_of(sql, run_id).values():
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    assert counts == {"succeeded": 1, "queued": 2, "pending": 3}
    ran = drive(repo, {"src": src, "builtin.noop": lambda p: {"v": p["item"]}}, batch=1)
    assert "each[0]" not in ran and len([k for k in ran if k.startswith("each[")]) == 5
    assert repo.runs.get_run(run_id).status == "succeeded"


def test_a_retry_of_failed_items_waits_for_running_items(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=mapped(3)).run_id
    [first] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    complete(repo, first.id, first.version, {"params": first.params})
    leased = repo.leases.lease(worker="w", queue="default", limit=16, ttl_s=30)
    [other] = [n for n in leased if n.node_key == "other"]
    complete(repo, other.id, other.version, {})
    leased = [n for n in leased if n.parent_id is not None]
    repo.leases.fail(leased[0].id, leased[0].version, {"type": "Boom", "message": "x"})
    assert repo.runs.get_run(run_id).status == "failed"
    with pytest.raises(Conflict, match="still have running items"):
        retry_run(repo, run_id, None, items="failed")
    for item in leased[1:]:
        complete(repo, item.id, item.version, {"v": 1})
    assert retry_run(repo, run_id, None, items="failed") == "running"


def test_a_plain_retry_still_runs_every_item_again(repo: Store, sql) -> None:
    run_id = run_map_failing(repo, 4, {2})
    retry_run(repo, run_id, None)
    ran = drive(repo, {"src": src})
    assert sorted(k for k in ran if k.startswith("each[")) == [f"each[{i}]" for i in range(4)]
    with pytest.raises(InvalidRequest, match="'items' must be one of"):
        retry_run(repo, run_id, None, items="some")


def chain(fail_fast: bool = True):
    return spec({
        "a": {"executor": "builtin.noop"},
        "b": {"executor": "builtin.noop", "depends_on": ["a"], "max_attempts": 1},
        "c": {"executor": "builtin.merge", "depends_on": ["b"]},
        "d": {"executor": "builtin.noop", "depends_on": ["a"]},
    }, fail_fast=fail_fast)


def boom(payload: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("b broke")


def test_resolving_a_failed_node_lets_its_run_go_on(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=chain()).run_id
    [a] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    complete(repo, a.id, a.version, {})
    # b fails while d is still queued: fail fast cancels d.
    [b] = [n for n in repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)]
    repo.leases.fail(b.id, b.version, {"type": "Boom", "message": "b broke"})
    run = repo.runs.get_run(run_id)
    assert run.status == "failed"
    assert {n.key: n.status for n in run.nodes} == {
        "a": "succeeded", "b": "failed", "c": "cancelled", "d": "cancelled"}

    with pytest.raises(InvalidRequest, match="of node 'b' must be a JSON object"):
        resolve_node(repo, run_id, "b", [1], tenant="t", by="key-1")
    result = resolve_node(repo, run_id, "b", {"answer": 42}, tenant="t", by="key-1")
    assert (result.status, result.run_status) == ("succeeded", "running")
    resolved = node(repo, run_id, "b")
    assert (resolved.status, resolved.outputs, resolved.error) == (
        "succeeded", {"answer": 42}, None)
    [event] = events(sql, run_id, "node_resolved")
    assert event["node_key"] == "b" and event["data"]["by"] == "key-1"
    assert event["data"]["status"] == "failed" and event["data"]["error"]["type"] == "Boom"

    assert sorted(drive(repo, {"c": lambda p: p["deps"]["b"]})) == ["c", "d"]
    run = repo.runs.get_run(run_id)
    assert run.status == "succeeded" and run.error is None
    assert node(repo, run_id, "c").outputs == {"answer": 42}
    types = [e["type"] for e in events(sql, run_id) if e["node_key"] is None]
    assert types[-3:] == ["run_failed", "run_queued", "run_succeeded"]


def test_resolving_the_last_failed_node_ends_the_run_at_once(repo: Store) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=spec({
        "a": {"executor": "builtin.noop"},
        "b": {"executor": "builtin.noop", "depends_on": ["a"], "max_attempts": 1},
    })).run_id
    drive(repo, {"b": boom})
    assert repo.runs.get_run(run_id).status == "failed"
    result = resolve_node(repo, run_id, "b", {"ok": True}, tenant=None, by="cli-local")
    assert result.run_status == "succeeded"
    run = repo.runs.get_run(run_id)
    assert run.status == "succeeded" and run.outputs == {"b": {"ok": True}}
    assert run.nodes_remaining == 0


def test_resolving_in_an_open_run_releases_what_was_skipped(repo: Store) -> None:
    """fail_fast false: b failed, its dependent c was skipped, d still runs."""
    run_id = repo.submissions.submit_run(tenant="t", spec=chain(fail_fast=False)).run_id
    [a] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    complete(repo, a.id, a.version, {})
    leased = {n.node_key: n for n in repo.leases.lease(worker="w", queue="default",
                                                        limit=2, ttl_s=30)}
    repo.leases.fail(leased["b"].id, leased["b"].version, {"type": "Boom", "message": "x"})
    assert node(repo, run_id, "c").status == "skipped"
    assert repo.runs.get_run(run_id).status == "running"  # d runs on

    assert resolve_node(repo, run_id, "b", {}, tenant=None, by="me").run_status == "running"
    complete(repo, leased["d"].id, leased["d"].version, {})
    assert drive(repo) == ["c"]
    run = repo.runs.get_run(run_id)
    assert run.status == "succeeded" and run.nodes_remaining == 0


def test_resolving_a_failed_map_node(repo: Store) -> None:
    run_id = run_map_failing(repo, 3, {1})
    resolve_node(repo, run_id, "each", [{"v": 0}, {"v": "by hand"}, {"v": 20}],
                 tenant=None, by="me")
    drive(repo, {"after": lambda p: p["deps"]})
    assert repo.runs.get_run(run_id).status == "succeeded"
    assert node(repo, run_id, "after").outputs == {
        "each": [{"v": 0}, {"v": "by hand"}, {"v": 20}]}


def test_resolve_is_refused_with_a_reason_and_writes_nothing(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=chain()).run_id
    [a] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    written = len(events(sql, run_id))
    with pytest.raises(Conflict, match="node 'a' is running"):
        resolve_node(repo, run_id, "a", {}, tenant=None, by="me")
    complete(repo, a.id, a.version, {})
    written = len(events(sql, run_id))
    with pytest.raises(Conflict, match="node 'a' is succeeded"):
        resolve_node(repo, run_id, "a", {}, tenant=None, by="me")
    with pytest.raises(Conflict, match="is pending"):
        resolve_node(repo, run_id, "c", {}, tenant=None, by="me")
    with pytest.raises(NotFound, match="no node 'zz'"):
        resolve_node(repo, run_id, "zz", {}, tenant=None, by="me")
    with pytest.raises(NotFound):
        resolve_node(repo, run_id, "a", {}, tenant="another", by="me")
    with pytest.raises(NotFound):
        resolve_node(repo, uuid.uuid4(), "a", {}, tenant=None, by="me")
    with pytest.raises(InvalidRequest, match="must be a JSON object"):
        resolve_node(repo, run_id, "a", "text", tenant=None, by="me")
    with pytest.raises(InvalidRequest, match="NUL"):
        resolve_node(repo, run_id, "a", {"x": "\x00"}, tenant=None, by="me")
    assert len(events(sql, run_id)) == written


def test_resolve_refuses_a_map_item_and_wrong_shaped_outputs(repo: Store, sql) -> None:
    run_id = run_map_failing(repo, 3, {1})
    with pytest.raises(Conflict, match="item of a map node"):
        resolve_node(repo, run_id, "each[1]", {}, tenant=None, by="me")
    with pytest.raises(InvalidRequest, match="map node: its outputs must be a JSON list"):
        resolve_node(repo, run_id, "each", {}, tenant=None, by="me")
    assert events(sql, run_id, "node_resolved") == []


def test_a_retry_of_failed_items_of_a_sub_workflow_map_starts_one_new_child(
        repo: Store, sql) -> None:
    """Each item is a child run: only the items that did not succeed (the failed one, and
    those its failure cancelled) get a new child."""
    service.register_workflow(repo, {"name": "summarize", "nodes": {
        "fetch": {"executor": "builtin.echo", "max_attempts": 1}}})
    wf = service.pin_subworkflows(spec({
        "retrieve": {"executor": "builtin.echo", "params": {"docs": ["a", "FAIL", "c"]}},
        "each": {"workflow": {"name": "summarize"}, "depends_on": ["retrieve"],
                 "max_attempts": 1, "map": {"dep": "retrieve", "path": "params.docs"}},
    }, name="research"), repo)
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    broken = {"FAIL"}

    def fetch(payload: dict[str, Any]) -> dict[str, Any]:
        if payload["run"]["item"] in broken:
            raise RuntimeError("cannot fetch")
        return {"text": payload["run"]["item"]}

    drive(repo, {"retrieve": lambda p: {"params": p["params"]}, "fetch": fetch})
    assert repo.runs.get_run(run_id).status == "failed"
    children = repo.runs.get_run(run_id).children
    assert children is not None and len(children) == 3
    kept = sum(child.status == "succeeded" for child in children)
    assert 1 <= kept < 3
    broken.clear()
    retry_run(repo, run_id, None, items="failed")
    assert drive(repo, {"fetch": fetch}) == ["fetch"] * (3 - kept)  # the new children only
    run = repo.runs.get_run(run_id)
    assert run.status == "succeeded"
    assert run.children is not None and len(run.children) == 3 + 3 - kept
    assert [o["fetch"]["text"] for o in node(repo, run_id, "each").outputs] == \
        ["a", "FAIL", "c"]


def test_resolving_one_of_two_failed_nodes_leaves_the_other_branch_as_it_ended(
        repo: Store) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=spec({
        "x": {"executor": "builtin.noop", "max_attempts": 1},
        "x2": {"executor": "builtin.noop", "depends_on": ["x"]},
        "y": {"executor": "builtin.noop", "max_attempts": 1},
        "y2": {"executor": "builtin.noop", "depends_on": ["y"]},
        "both": {"executor": "builtin.noop", "depends_on": ["x2", "y2"]},
    }, fail_fast=False)).run_id

    def y_fails(payload: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("y broke")

    drive(repo, {"x": boom, "y": y_fails})
    assert repo.runs.get_run(run_id).status == "failed"  # nothing succeeded
    assert resolve_node(repo, run_id, "x", {}, tenant=None, by="me").run_status == "running"
    assert drive(repo) == ["x2"]  # `both` also waits on y's branch: it stays skipped
    run = repo.runs.get_run(run_id)
    assert {n.key: n.status for n in run.nodes} == {
        "x": "succeeded", "x2": "succeeded", "y": "failed", "y2": "skipped",
        "both": "skipped"}
    assert run.status == "partial_succeeded" and run.error["node"] == "y"
    assert run.nodes_remaining == 0


def test_a_finished_child_run_points_to_its_parents_node(repo: Store) -> None:
    """A failed child already failed its parent's node: resolving inside the child would
    not change that, so the answer names the node to resolve instead."""
    service.register_workflow(repo, {"name": "inner", "nodes": {
        "step": {"executor": "builtin.noop", "max_attempts": 1}}})
    wf = service.pin_subworkflows(spec({
        "sub": {"workflow": {"name": "inner"}, "max_attempts": 1},
        "after": {"executor": "builtin.noop", "depends_on": ["sub"]},
    }, name="outer"), repo)
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    drive(repo, {"step": boom})
    run = repo.runs.get_run(run_id)
    assert run.status == "failed" and run.children
    child = run.children[0].run_id
    with pytest.raises(Conflict, match="resolve that node in run") as refused:
        resolve_node(repo, child, "step", {}, tenant=None, by="me")
    assert refused.value.details == {"parent_run_id": str(run_id), "parent_node_key": "sub"}
    resolve_node(repo, run_id, "sub", {"from": "hand"}, tenant=None, by="me")
    assert drive(repo) == ["after"]
    assert repo.runs.get_run(run_id).status == "succeeded"
