"""Sub-workflow nodes and maps over a sub-workflow (issue 17) through the store on a real
Postgres: child runs started in the releasing transaction, their end completing the
parent node (fenced), retries with a new child, cancels and deadlines over the tree,
recursion and depth limits, max_parallel and on_item_error with children, a lost worker,
and tenant isolation."""

from __future__ import annotations

from typing import Any

import pytest

from dagq import service
from dagq.config import Settings
from dagq.errors import InvalidWorkflow, NotFound
from dagq.store import Store
from dagq.sweeper.passes import Sweeper
from tests.harness.drive import complete, drive
from tests.harness.specs import spec

ECHO = {"builtin.echo": lambda payload: payload}


def register(repo: Store, name: str, nodes: dict[str, Any], **extra: Any) -> int:
    record, _ = service.register_workflow(repo, {"name": name, "nodes": nodes, **extra})
    return record.version


def summarize(repo: Store, **extra: Any) -> int:
    """3 nodes; `fetch` fails (retryable) when the item's text says FAIL."""
    return register(repo, "summarize", {
        "fetch": {"executor": "builtin.echo", "max_attempts": 1},
        "split": {"executor": "builtin.echo", "depends_on": ["fetch"]},
        "summary": {"executor": "builtin.echo", "depends_on": ["split"]},
    }, **extra)


def doc_executor(payload: dict[str, Any]) -> Any:
    item = (payload.get("run") or {}).get("item")
    if isinstance(item, dict) and "FAIL" in item.get("text", ""):
        raise RuntimeError("cannot summarize")
    return {"text": item["text"] if isinstance(item, dict) else None}


EXECS = {"builtin.echo": lambda p: p, "fetch": doc_executor,
         "summary": lambda p: {"summary": p["deps"]["split"]["deps"]["fetch"]["text"]}}


def research(items: list[Any], **map_options: Any):
    return spec({
        "retrieve": {"executor": "builtin.echo", "params": {"docs": items}},
        "each": {"workflow": {"name": "summarize"}, "depends_on": ["retrieve"],
                 "max_attempts": 1,
                 "map": {"dep": "retrieve", "path": "params.docs", **map_options}},
        "aggregate": {"executor": "builtin.echo", "depends_on": ["each"]},
    }, name="research", fail_fast=False)


def submit(repo: Store, wf, tenant: str = "t") -> Any:
    return repo.submissions.submit_run(
        tenant=tenant, spec=service.pin_subworkflows(wf, repo)).run_id


def children(sql, run_id) -> list[dict[str, Any]]:
    return sql.execute("SELECT id, status, parent_node_key, parent_item_index, inputs, depth "
                       "FROM dagq.runs WHERE parent_run_id = %s "
                       "ORDER BY created_at, parent_item_index, id",
                       (run_id,)).fetchall()


def node(repo: Store, run_id, key: str):
    return next(n for n in repo.runs.get_run(run_id).nodes if n.key == key)


def test_child_success_completes_the_node_with_the_childs_outputs(repo, sql) -> None:
    summarize(repo)
    run_id = submit(repo, spec({
        "a": {"executor": "builtin.echo", "params": {"x": 1}},
        "sub": {"workflow": {"name": "summarize"}, "depends_on": ["a"], "params": {"p": 2}},
        "after": {"executor": "builtin.echo", "depends_on": ["sub"]},
    }, name="outer"))
    drive(repo, {"a": lambda p: {"x": 1}})
    [child] = children(sql, run_id)
    assert child["parent_node_key"] == "sub" and child["depth"] == 1
    assert child["inputs"] == {"run": {}, "deps": {"a": {"x": 1}}, "params": {"p": 2}}
    run = repo.runs.get_run(run_id)
    assert run.status == "succeeded"
    sub = node(repo, run_id, "sub")
    assert sub.outputs == repo.runs.get_run(child["id"]).outputs
    assert "summary" in sub.outputs
    assert run.children[0].run_id == child["id"] and run.children[0].item_index is None
    view = repo.runs.get_run(child["id"])
    assert (view.parent_run_id, view.parent_node_key) == (run_id, "sub")
    assert [r.run_id for r in repo.runs.list_runs(tenant="t", parent=run_id)] == [child["id"]]


def outer_with_sub(max_attempts: int = 1, **extra: Any):
    return spec({"sub": {"workflow": {"name": "summarize"}, "max_attempts": max_attempts},
                 "after": {"executor": "builtin.echo", "depends_on": ["sub"]}},
                name="outer", **extra)


def fail_fetch(p: dict[str, Any]) -> Any:
    raise RuntimeError("fetch broke")


def test_child_failure_fails_the_node_and_the_run(repo, sql) -> None:
    summarize(repo)
    run_id = submit(repo, outer_with_sub())
    drive(repo, {"fetch": fail_fetch})
    [child] = children(sql, run_id)
    assert child["status"] == "failed"
    sub = node(repo, run_id, "sub")
    assert sub.status == "failed" and sub.error["type"] == "ChildRunFailed"
    assert sub.error["child_run_id"] == str(child["id"])
    assert "fetch broke" in sub.error["message"]
    run = repo.runs.get_run(run_id)
    assert run.status == "failed" and run.error["node"] == "sub"
    assert node(repo, run_id, "after").status == "cancelled"


def test_a_failed_child_is_retried_as_a_new_child(repo, sql) -> None:
    summarize(repo)
    run_id = submit(repo, outer_with_sub(max_attempts=2))
    calls = []

    def flaky(p: dict[str, Any]) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first child fails")
        return {"text": "ok"}

    drive(repo, {"fetch": flaky})
    first, second = children(sql, run_id)
    assert (first["status"], second["status"]) == ("failed", "succeeded")
    sub = node(repo, run_id, "sub")
    assert sub.status == "succeeded" and sub.attempts == 2
    assert repo.runs.get_run(run_id).status == "succeeded"
    events = sql.execute("SELECT type, attempt FROM dagq.run_events WHERE run_id = %s AND "
                         "node_key = 'sub' ORDER BY id", (run_id,)).fetchall()
    assert [e["type"] for e in events] == [
        "node_waiting", "node_retry", "node_waiting", "node_succeeded"]


def test_a_late_child_changes_nothing(repo, sql) -> None:
    """The child is fenced on the node's version: a node retried (or cancelled) since
    it started that child ignores it."""
    summarize(repo)
    run_id = submit(repo, outer_with_sub(max_attempts=2))
    [child] = children(sql, run_id)
    sql.execute("UPDATE dagq.node_tasks SET version = version + 1 WHERE run_id = %s AND "
                "node_key = 'sub'", (run_id,))
    drive(repo)
    assert repo.runs.get_run(child["id"]).status == "succeeded"
    assert node(repo, run_id, "sub").status == "waiting"


def three_levels(repo: Store) -> Any:
    summarize(repo)
    register(repo, "middle", {"inner": {"workflow": {"name": "summarize"}}})
    return submit(repo, spec({"mid": {"workflow": {"name": "middle"}}}, name="top"))


def test_cancel_cascades_down_two_levels(repo, sql) -> None:
    run_id = three_levels(repo)
    [mid] = children(sql, run_id)
    [inner] = children(sql, mid["id"])
    assert inner["depth"] == 2
    assert repo.runs.cancel_run(run_id, "t") == "cancelled"
    for rid in (run_id, mid["id"], inner["id"]):
        assert repo.runs.get_run(rid).status == "cancelled"
    assert drive(repo) == []  # nothing of the tree runs any more
    left = sql.execute("SELECT count(*) AS n FROM dagq.node_tasks WHERE run_id = %s AND "
                       "status IN ('queued', 'waiting', 'pending')", (inner["id"],)).fetchone()
    assert left["n"] == 0


def test_a_cancelled_child_fails_its_node(repo, sql) -> None:
    summarize(repo)
    run_id = submit(repo, outer_with_sub())
    [child] = children(sql, run_id)
    repo.runs.cancel_run(child["id"], "t")
    sub = node(repo, run_id, "sub")
    assert sub.status == "failed" and "cancelled" in sub.error["message"]
    assert repo.runs.get_run(run_id).status == "failed"


def test_the_deadline_applies_to_the_whole_tree(repo, sql) -> None:
    summarize(repo)
    register(repo, "middle", {"inner": {"workflow": {"name": "summarize"}}})
    run_id = repo.submissions.submit_run(tenant="t", deadline_s=600, spec=service.pin_subworkflows(
        spec({"mid": {"workflow": {"name": "middle"}}}, name="top"), repo)).run_id
    [mid] = children(sql, run_id)
    [inner] = children(sql, mid["id"])
    deadlines = sql.execute("SELECT deadline_at FROM dagq.runs WHERE id = ANY(%s)",
                            ([run_id, mid["id"], inner["id"]],)).fetchall()
    assert all(d["deadline_at"] is not None for d in deadlines)
    assert max(d["deadline_at"] for d in deadlines) - min(
        d["deadline_at"] for d in deadlines) < __import__("datetime").timedelta(seconds=5)
    sql.execute("UPDATE dagq.runs SET deadline_at = now() - interval '1 second' "
                "WHERE id = %s", (run_id,))
    Sweeper(repo, Settings(worker_dead_after_s=30, retention_days=7)).run_once()
    run = repo.runs.get_run(run_id)
    assert run.status == "failed" and run.error["type"] == "DeadlineExceeded"
    assert repo.runs.get_run(mid["id"]).status == "cancelled"
    assert repo.runs.get_run(inner["id"]).status == "cancelled"
    assert drive(repo) == []


def test_recursion_is_rejected_at_registration(repo) -> None:
    with pytest.raises(InvalidWorkflow, match="would call itself"):
        register(repo, "selfish", {"me": {"workflow": {"name": "selfish"}}})
    register(repo, "a", {"n": {"executor": "builtin.noop"}})
    register(repo, "b", {"calls_a": {"workflow": {"name": "a"}}})
    with pytest.raises(InvalidWorkflow, match=r"a -> b -> a") as exc:
        register(repo, "a", {"calls_b": {"workflow": {"name": "b"}}})
    assert exc.value.details["node"] == "calls_b"


@pytest.mark.parametrize(("node_spec", "match"), [
    ({"workflow": {"name": "nope"}}, "node 'n' runs unknown workflow 'nope'"),
    ({"workflow": {"name": "summarize", "version": 99}}, "unknown workflow 'summarize' "
                                                         "version 99"),
    ({"workflow": {"name": "summarize"}, "executor": "builtin.noop"}, "no executor"),
    ({"workflow": {"name": "summarize"}, "wait": {"seconds": 1}}, "no executor and no wait"),
    ({"workflow": {"name": "summarize"}, "queue": "q"}, "cannot have 'queue'"),
])
def test_bad_workflow_nodes_are_refused_naming_the_node(repo, node_spec, match) -> None:
    summarize(repo)
    with pytest.raises(InvalidWorkflow, match=match):
        service.submit(repo, tenant="t", workflow={"name": "w", "nodes": {"n": node_spec}})
    assert repo.runs.list_runs(tenant="t") == []


def test_submit_pins_the_latest_version(repo, sql) -> None:
    summarize(repo)
    result = service.submit(repo, tenant="t", workflow={"name": "w", "nodes": {
        "n": {"workflow": {"name": "summarize"}}}})
    assert summarize(repo, fail_fast=False) == 2  # a new version after the submit
    [child] = children(sql, result.run_id)
    assert repo.runs.get_run(child["id"]).workflow_version == 1
    pinned = sql.execute("SELECT subflow FROM dagq.node_tasks WHERE run_id = %s",
                         (result.run_id,)).fetchone()
    assert pinned["subflow"] == {"name": "summarize", "version": 1}


def test_nesting_deeper_than_the_limit_fails_the_node(repo, sql) -> None:
    register(repo, "w0", {"n": {"executor": "builtin.noop"}})
    for level in range(1, 10):
        register(repo, f"w{level}", {"n": {"workflow": {"name": f"w{level - 1}"}}})
    run_id = submit(repo, spec({"top": {"workflow": {"name": "w9"}, "max_attempts": 3}},
                               name="top"))
    deepest = sql.execute("SELECT id, depth, status, error FROM dagq.runs "
                          "ORDER BY depth DESC LIMIT 1").fetchone()
    assert deepest["depth"] == 8 and deepest["status"] == "failed"
    n = next(n for n in repo.runs.get_run(deepest["id"]).nodes if n.key == "n")
    assert n.error["type"] == "NestingTooDeep" and "limit is 8" in n.error["message"]
    assert n.attempts == 1  # not retried
    run = repo.runs.get_run(run_id)
    assert run.status == "failed"
    assert sql.execute("SELECT count(*) AS n FROM dagq.runs WHERE status IN "
                       "('queued', 'running')").fetchone()["n"] == 0


def docs(*texts: str) -> list[dict[str, str]]:
    return [{"text": t} for t in texts]


def open_children(sql, run_id) -> int:
    return sql.execute("SELECT count(*) AS n FROM dagq.runs WHERE parent_run_id = %s AND "
                       "status IN ('queued', 'running')", (run_id,)).fetchone()["n"]


def test_a_map_over_a_sub_workflow_keeps_max_parallel_children(repo, sql) -> None:
    summarize(repo)
    texts = [f"doc {i}" for i in range(12)]
    run_id = submit(repo, research(docs(*texts), max_parallel=5))
    peak, rounds = 0, 0
    while True:  # one node at a time, counting the open children after each step
        leased = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
        if not leased:
            break
        [n] = leased
        fn = EXECS.get(n.node_key) or EXECS["builtin.echo"]

        assert complete(repo, n.id, n.version, fn(n.payload()))
        peak = max(peak, open_children(sql, run_id))
        rounds += 1
    assert peak == 5 and rounds == 2 + 12 * 3
    each = node(repo, run_id, "each")
    assert each.status == "succeeded" and each.items == 12 and each.items_done == 12
    assert [o["summary"]["summary"] for o in each.outputs] == texts
    kids = children(sql, run_id)
    assert [k["parent_item_index"] for k in kids] == list(range(12))
    assert kids[3]["inputs"]["item"] == {"text": "doc 3"} and kids[3]["inputs"]["index"] == 3
    assert {k["parent_node_key"] for k in kids} == {"each"}
    view = repo.runs.get_run(run_id)
    assert view.status == "succeeded"
    assert [c.item_index for c in view.children] == list(range(12))


@pytest.mark.parametrize(("mode", "expected", "status"), [
    ("continue", ["a", None, "c"], "succeeded"),
    ("drop", ["a", "c"], "succeeded"),
    (None, None, "failed"),
])
def test_on_item_error_with_children(repo, sql, mode, expected, status) -> None:
    summarize(repo)
    options = {"on_item_error": mode} if mode else {}
    run_id = submit(repo, research(docs("a", "FAIL", "c"), max_parallel=1, **options))
    drive(repo, EXECS)
    each = node(repo, run_id, "each")
    assert each.status == status
    if expected is not None:
        assert [o and o["summary"]["summary"] for o in each.outputs] == expected
        assert (each.items_done, each.items_failed) == (3, 1)
        assert repo.runs.get_run(run_id).status == "succeeded"
    else:
        assert each.error["type"] == "ChildRunFailed"
        assert node(repo, run_id, "aggregate").status == "skipped"
        # the items after the failed one never started a child
        assert [k["parent_item_index"] for k in children(sql, run_id)] == [0, 1]
    assert open_children(sql, run_id) == 0


def test_a_failed_map_cancels_its_running_children(repo, sql) -> None:
    summarize(repo)
    run_id = submit(repo, research(docs("FAIL", "b", "c")))
    [retrieve] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)

    complete(repo, retrieve.id, retrieve.version, EXECS["builtin.echo"](retrieve.payload()))
    fetches = repo.leases.lease(worker="w", queue="default", limit=10, ttl_s=30)
    failing = next(f for f in fetches if "FAIL" in f.run_inputs["item"]["text"])
    repo.leases.fail(failing.id, failing.version, {"type": "Boom", "message": "no"})
    assert node(repo, run_id, "each").status == "failed"
    assert open_children(sql, run_id) == 0
    statuses = sorted(k["status"] for k in children(sql, run_id))
    assert statuses == ["cancelled", "cancelled", "failed"]


def test_a_lost_worker_does_not_strand_the_tree(repo, sql) -> None:
    """The worker running a child's node dies (its lease expires): the node is retried
    and the tree still finishes."""
    summarize(repo)
    run_id = submit(repo, research(docs("a", "b"), max_parallel=2))
    [retrieve] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    complete(repo, retrieve.id, retrieve.version, retrieve.payload())
    lost = repo.leases.lease(worker="dead", queue="default", limit=1, ttl_s=30)
    assert lost and lost[0].node_key == "fetch"
    sql.execute("UPDATE dagq.node_tasks SET lease_expires_at = now() - interval '1 second', "
                "max_attempts = 2 WHERE id = %s", (lost[0].id,))
    Sweeper(repo, Settings(worker_dead_after_s=30, retention_days=7)).run_once()
    sql.execute("UPDATE dagq.node_tasks SET available_at = now() WHERE status = 'queued'")
    drive(repo, EXECS)
    assert repo.runs.get_run(run_id).status == "succeeded"
    assert node(repo, run_id, "each").outputs[0]["summary"]["summary"] == "a"


def test_children_belong_to_their_parents_tenant(repo, sql) -> None:
    summarize(repo)
    run_id = submit(repo, outer_with_sub(), tenant="acme")
    [child] = children(sql, run_id)
    assert repo.runs.get_run(child["id"], "acme").tenant == "acme"
    with pytest.raises(NotFound):
        repo.runs.get_run(child["id"], "other")
    assert repo.runs.list_runs(tenant="other", parent=run_id) == []
    assert len(repo.runs.list_runs(tenant="acme", parent=run_id)) == 1
    with pytest.raises(NotFound):
        repo.runs.cancel_run(child["id"], "other")


def test_the_research_example_maps_summarize_and_fails_on_a_FAIL_document(repo) -> None:
    import json
    from pathlib import Path

    from dagq.spec.workflow import parse_spec
    from examples import research_executors as ex

    root = Path(__file__).resolve().parents[3] / "examples"
    for name in ("summarize", "research"):
        repo.workflows.register_workflow(
            parse_spec(json.loads((root / f"{name}.json").read_text())))
    research_spec = service.pin_subworkflows(parse_spec(json.loads(
        (root / "research.json").read_text())), repo)
    fns = {f"research.{n}": getattr(ex, n)
           for n in ("retrieve", "clean", "summarize", "score", "aggregate")}
    ok = repo.submissions.submit_run(tenant="t", spec=research_spec, inputs={"limit": 6}).run_id
    drive(repo, fns)
    run = repo.runs.get_run(ok)
    assert run.status == "succeeded" and len(run.children) == 6
    assert run.outputs["aggregate"]["digest"][0].startswith("d1: Postgres keeps")
    bad = repo.submissions.submit_run(tenant="t", spec=research_spec, inputs={"documents": [
        {"id": "x", "text": "fine"}, {"id": "y", "text": "please FAIL"}]}).run_id
    drive(repo, fns)
    assert repo.runs.get_run(bad).status == "failed"
    assert node(repo, bad, "summaries").error["type"] == "ChildRunFailed"


def test_a_rerun_from_a_root_sub_workflow_node_starts_a_new_child(repo, sql) -> None:
    summarize(repo)
    wf = spec({
        "sub": {"workflow": {"name": "summarize"}},
        "after": {"executor": "builtin.echo", "depends_on": ["sub"]},
    }, name="outer-root")
    first = submit(repo, wf)
    drive(repo, ECHO)
    assert repo.runs.get_run(first).status == "succeeded"
    again = repo.reruns.rerun_run(first, "t", from_=["sub"]).run_id
    assert node(repo, again, "sub").status == "waiting"
    (child,) = children(sql, again)
    drive(repo, ECHO)
    assert repo.runs.get_run(again).status == "succeeded"
    assert sql.execute("SELECT status FROM dagq.runs WHERE id = %s",
                       (child["id"],)).fetchone()["status"] == "succeeded"
    assert len(children(sql, first)) == 1  # the original's child is not touched


def test_a_run_replaced_by_its_concurrency_key_cancels_its_children(repo, sql) -> None:
    summarize(repo)
    wf = {"name": "chat-tree", "nodes": {"sub": {"workflow": {"name": "summarize"}}},
          "concurrency": {"key": "inputs.conversation_id", "on_limit": "cancel_running"}}
    first = service.submit(repo, tenant="t", workflow=wf, inputs={"conversation_id": "c"})
    (child,) = children(sql, first.run_id)
    second = service.submit(repo, tenant="t", workflow=wf, inputs={"conversation_id": "c"})
    assert repo.runs.get_run(first.run_id).status == "cancelled"
    assert sql.execute("SELECT status FROM dagq.runs WHERE id = %s",
                       (child["id"],)).fetchone()["status"] == "cancelled"
    drive(repo, ECHO)
    assert repo.runs.get_run(second.run_id).status == "succeeded"


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
