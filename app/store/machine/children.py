"""Sub-workflow nodes: a node (or map item) that runs a registered workflow as a child run.

The node is `waiting` while its child runs and holds no worker. Its child is written in
the transaction that made it wait (a release, a map's window moving on, a submit), and
the child's finalization ends the node in the transaction that finishes the child,
fenced on the node's version when it started that child (`finished_child`): a crash
between the two cannot strand the parent, and a late child changes nothing. A parent
run that finishes (cancelled, failed, past its deadline) cancels its open children, and
theirs (`orphan_children`).
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from dagq.models import ExecutorInfo
from dagq.runtime.sqlfiles import queries
from dagq.spec.stored import stored_spec
from dagq.spec.workflow import (
    MAX_NESTING,
    WorkflowSpec,
    fill_executor_defaults,
    parse_spec,
    sha256_json,
)
from dagq.store.machine.unit import UnitOfWork, error_data, run_created
from dagq.store.new_runs import first_events, node_rows

if TYPE_CHECKING:
    from dagq.store.machine import Machine

log = logging.getLogger("dagq.store")

# The node row and version too: a retried run resets attempts (and writes new map items).
CHILD_EVENT_KEY = "dagq.child:{run_id}:{node_key}:{attempt}:{node_id}.{version}"
NOT_RETRIED = ("DeadlineExceeded", "NestingTooDeep", "WorkflowNotFound")


EXECUTOR_FIELDS = ("name", "queue", "max_attempts", "timeout_s", "concurrency", "rate_per_s")
TEMPLATES_KEPT = 512
# (spec hash, executors' defaults) -> the filled-in spec and its node rows at priority 0:
# parsed once per process, not once per child run.
_templates: dict[tuple[Any, ...], tuple[WorkflowSpec, list[dict[str, Any]]]] = {}


def child_template(spec_hash: str, executors: tuple[tuple[Any, ...], ...],
                   raw_spec: dict[str, Any]) -> tuple[WorkflowSpec, list[dict[str, Any]]]:
    key = (spec_hash, executors)
    found = _templates.get(key)
    if found is None:
        known = {row[0]: ExecutorInfo(**dict(zip(EXECUTOR_FIELDS, row, strict=True)))
                 for row in executors}
        # (as written: a row registered before 0.3.0 holds its defaults filled in)
        filled = fill_executor_defaults(parse_spec(stored_spec(raw_spec, spec_hash)), known)
        found = (filled, node_rows(filled, 0))
        if len(_templates) >= TEMPLATES_KEPT:
            _templates.clear()
        _templates[key] = found
    return found


def child_inputs(ctx: dict[str, Any]) -> dict[str, Any]:
    """What an executor in the node's place would receive (LeasedNode.payload)."""
    body: dict[str, Any] = {"run": ctx["run_inputs"], "deps": ctx["deps"],
                            "params": ctx["params"]}
    if ctx["item_index"] is not None:
        body["item"] = ctx["item"]
        body["index"] = ctx["item_index"]
    return body


class Children:
    """Child runs started, finished into their nodes, and cancelled with their parents."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine

    def start(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, node_ids: list[int]
    ) -> None:
        """Start one attempt (a new child run) of each waiting sub-workflow node."""
        for node_id in sorted(node_ids):
            ctx = cur.execute(queries()["begin_child_attempt"], {"id": node_id}).fetchone()
            if ctx is None or ctx["run_status"] not in ("queued", "running"):
                continue
            problem = self._child_problem(ctx)
            if problem is not None:
                self._end_child_node(cur, work, ctx, "failed", error=problem)
                continue
            child_id = self._write_child(cur, work, ctx)
            work.touch(ctx["run_id"])
            work.event(ctx["run_id"], ctx["node_key"], "node_waiting", ctx["attempts"], {
                "workflow": {"name": ctx["subflow"]["name"],
                             "version": ctx["workflow_version"]},
                "child_run_id": str(child_id), "item_index": ctx["item_index"]})

    @staticmethod
    def _child_problem(ctx: dict[str, Any]) -> dict[str, Any] | None:
        """Why this node cannot start a child run (never retried), or None."""
        name = ctx["subflow"]["name"]
        if ctx["depth"] + 1 > MAX_NESTING:
            return {"type": "NestingTooDeep",
                    "message": f"sub-workflow {name!r} would be nested {ctx['depth'] + 1} "
                               f"levels deep; the limit is {MAX_NESTING}"}
        if ctx["workflow_spec"] is None:
            version = ctx["subflow"].get("version")
            return {"type": "WorkflowNotFound",
                    "message": f"workflow {name!r}"
                               f"{f' version {version}' if version else ''} is not registered"}
        return None

    def _write_child(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, ctx: dict[str, Any]
    ) -> uuid.UUID:
        """The child run, its nodes and first events (as a submit writes them), linked to
        its parent node. Its event key names the parent run, node (item) and attempt, so
        the same attempt never writes two children."""
        q = queries()
        executors = tuple(sorted(tuple(row[f] for f in EXECUTOR_FIELDS)
                                 for row in cur.execute(q["known_executors"]).fetchall()))
        spec, template = child_template(ctx["spec_hash"], executors, ctx["workflow_spec"])
        nodes = [{**node, "priority": node["priority"] + ctx["priority"]}
                 for node in template]
        started = any(node["status"] == "waiting" for node in nodes)
        inputs = child_inputs(ctx)
        event_key = CHILD_EVENT_KEY.format(run_id=ctx["run_id"], node_key=ctx["node_key"],
                                           attempt=ctx["attempts"], node_id=ctx["id"],
                                           version=ctx["version"])
        events = first_events(nodes, {
            "workflow": spec.name, "version": ctx["workflow_version"],
            "parent_run_id": str(ctx["run_id"]), "parent_node_key": ctx["parent_node_key"]})
        child_id = uuid.uuid4()
        deadline_s = ctx["deadline_s"]
        row = cur.execute(q["submit_run"], {
            "id": child_id, "tenant": ctx["tenant"], "workflow": spec.name,
            "workflow_version": ctx["workflow_version"], "spec": Jsonb(spec.canonical()),
            "fingerprint": sha256_json({"event_key": event_key}), "event_key": event_key,
            "priority": ctx["priority"], "fail_fast": spec.fail_fast, "inputs": Jsonb(inputs),
            "nodes_total": len(spec.nodes),
            "deadline_s": max(deadline_s, 0.0) if deadline_s is not None else None,
            "nodes": Jsonb(nodes), "events": Jsonb(events), "started": started,
            "delay_s": None, "traceparent": None}).fetchone()
        if row is None:  # this attempt's child exists already
            found = cur.execute(q["child_run_by_event_key"], {
                "tenant": ctx["tenant"], "event_key": event_key}).fetchone()
            return found["id"] if found else child_id
        cur.execute(q["set_run_parent"], {
            "id": child_id, "parent_run_id": ctx["run_id"],
            "parent_node_key": ctx["parent_node_key"], "item_index": ctx["item_index"],
            "node_id": ctx["id"], "node_version": ctx["version"], "depth": ctx["depth"] + 1})
        run_created(child_id, (node["queue"] for node in nodes if node["status"] == "queued"))
        if started:  # its own root sub-workflow nodes start their children now
            self.start_roots(cur, work, [child_id])
        return child_id

    def start_roots(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, run_ids: list[uuid.UUID]
    ) -> None:
        """New runs' root sub-workflow nodes (waiting from the submit) start children."""
        ids = [r["id"] for r in cur.execute(queries()["waiting_subflow_nodes"], {
            "run_ids": run_ids, "parent_id": None}).fetchall()]
        if ids:
            self.start(cur, work, ids)

    def runs_finished(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, rows: list[dict[str, Any]]
    ) -> None:
        """Runs that just finished (rows: id, parent_run_id, parent_node_id,
        has_children): a child ends its parent node; a parent cancels its open children.

        Children end their nodes in (parent run, node) order: a group commit finishing
        children of several parents locks their nodes (and map nodes) in the order
        every other such transaction does."""
        ended = sorted((row for row in rows if row["parent_run_id"] is not None),
                       key=lambda row: (row["parent_run_id"], row["parent_node_id"]))
        for row in ended:
            self._child_finished(cur, work, row["id"])
        parents = [row["id"] for row in rows if row["has_children"]]
        if parents:
            self.cancel_orphans(cur, work, parents)

    def _child_finished(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, child_id: uuid.UUID
    ) -> None:
        """The node that started this child: succeeded with its outputs, retried with a
        new child, or failed (unless it no longer waits for this child: nothing)."""
        node = cur.execute(queries()["finished_child"], {"id": child_id}).fetchone()
        if node is None:
            return
        if node["child_status"] == "succeeded":
            self._end_child_node(cur, work, node, "succeeded", outputs=node["child_outputs"])
            return
        child_error = node["child_error"] or {}
        # A cause retrying cannot fix (too deep, past the deadline) keeps its type all the
        # way up the tree, so no level retries it.
        final = child_error.get("type") in NOT_RETRIED
        error = {"type": child_error["type"] if final else "ChildRunFailed",
                 "message": f"child run {child_id} {node['child_status']}"
                            + (f": {child_error.get('message')}"
                               if child_error.get("message") else ""),
                 "child_run_id": str(child_id), "child_error": child_error or None}
        if node["attempts"] < node["max_attempts"] and not final:
            work.touch(node["run_id"])
            work.event(node["run_id"], node["node_key"], "node_retry", node["attempts"],
                       {**error_data(error), "delay_s": 0})
            self.start(cur, work, [node["id"]])
            return
        self._end_child_node(cur, work, node, "failed", error=error)

    def _end_child_node(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, node: dict[str, Any], status: str,
        *, outputs: Any = None, error: dict[str, Any] | None = None,
    ) -> None:
        """End a waiting sub-workflow node or map item, and move that through its run."""
        if node["parent_id"] is None:
            self.m.release.end_wait(cur, work, node["id"], status, outputs=outputs, error=error)
            return
        q = queries()
        row = cur.execute(q["end_wait"], {
            "id": node["id"], "status": status,
            "outputs": Jsonb(outputs) if outputs is not None else None,
            "error": Jsonb(error) if error is not None else None}).fetchone()
        if row is None:
            return
        work.touch(row["run_id"])
        if status == "succeeded":
            work.event(row["run_id"], row["node_key"], "node_succeeded", row["attempts"])
            self.m.release.finish_map_item(cur, work, row)
            return
        assert error is not None
        work.event(row["run_id"], row["node_key"], "node_failed", row["attempts"],
                   error_data(error))
        mode = cur.execute(q["map_item_error_mode"], {"parent_id": row["parent_id"]}).fetchone()
        if mode is not None and mode["mode"] in ("continue", "drop"):
            self.m.release.finish_map_item(cur, work, row, failed=True)
        else:
            fail_fast = self.m.release.fail_fast(cur, row["run_id"])
            self.m.release.fail_map_parent(cur, work, row, error, fail_fast)

    def cancel_orphans(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, run_ids: list[uuid.UUID]
    ) -> None:
        """Cancel the open children of these runs whose node no longer waits for them,
        and theirs, level by level."""
        q = queries()
        while run_ids:
            children = [r["id"] for r in cur.execute(q["orphan_children"], {
                "run_ids": run_ids}).fetchall()]
            for child_id in children:
                nodes = cur.execute(q["cancel_waiting_nodes"], {"run_id": child_id}).fetchall()
                top = [n for n in nodes if n["parent_id"] is None]
                cur.execute(q["lock_run"], {"run_id": child_id})
                if cur.execute(q["cancel_run"], {"run_id": child_id,
                                                 "cancelled": len(top)}).fetchone():
                    for n in top:
                        work.event(child_id, n["node_key"], "node_cancelled", None,
                                   {"reason": "parent run cancelled its child"})
                    work.event(child_id, None, "run_cancelled", None,
                               {"reason": "its parent node no longer waits for it"})
                    work.cancelled.add(child_id)
            run_ids = children
