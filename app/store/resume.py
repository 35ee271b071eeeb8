"""Resolving a node (issue 34, item 3): a failed or cancelled node succeeds with outputs
a person gives, and its run goes on from there (`ResumeRepo.resolve_node`). The other
half of resuming only what failed, a retry of a map node's failed items, is
`RunRepo.retry_run(..., failed_items=True)` with dagq.store.machine.map_retry.

Node rows (all the run's top-level nodes, locked in id order) before the run row, as
everywhere in the store.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from dagq.errors import Conflict, InvalidRequest, NotFound
from dagq.models import ResolveResult
from dagq.runtime.sqlfiles import queries
from dagq.states import OPEN_NODE_STATUSES, OPEN_RUN_STATUSES
from dagq.store.machine.release import restart_status
from dagq.store.machine.unit import UnitOfWork
from dagq.store.runs import visible_run
from dagq.store.tx import Database, transient

if TYPE_CHECKING:
    from dagq.store.machine import Machine

RESOLVABLE = ("failed", "cancelled")
# A node left as it ended by a resolve may still be reopened when it ended this way and
# everything it depends on succeeded, is reopened too, or is still open.
REOPENED = ("cancelled", "skipped")


def going_on(nodes: list[dict[str, Any]], resolved: str) -> list[dict[str, Any]]:
    """The nodes a resolve reopens: each cancelled or skipped node all of whose
    dependencies succeeded (the resolved node has), are reopened too, or are still open
    (they release it when they end). A node downstream of another failed node stays as
    it ended. Each comes with `deps_remaining`: its dependencies not succeeded."""
    status = {n["node_key"]: n["status"] for n in nodes}
    status[resolved] = "succeeded"
    chosen: dict[str, dict[str, Any]] = {}
    candidates = [n for n in nodes if n["status"] in REOPENED and n["node_key"] != resolved]
    grew = True
    while grew:  # a fixed point: at most one pass per level of the graph
        grew = False
        for node in candidates:
            if node["node_key"] not in chosen and all(
                    status[dep] == "succeeded" or status[dep] in OPEN_NODE_STATUSES
                    or dep in chosen for dep in node["depends_on"]):
                chosen[node["node_key"]] = node
                grew = True
    return [{**node, "deps_remaining": sum(status[dep] != "succeeded"
                                           for dep in node["depends_on"])}
            for node in candidates if node["node_key"] in chosen]


def check_outputs(node: dict[str, Any], outputs: Any) -> Any:
    """A map node's outputs are the list of its items' outputs; any other node's an
    object (what its dependents read)."""
    if node["mapped"] and not isinstance(outputs, list):
        raise InvalidRequest(f"node {node['node_key']!r} is a map node: its outputs must be "
                             "a JSON list (one entry per item)")
    if not node["mapped"] and not isinstance(outputs, dict):
        raise InvalidRequest(f"the outputs of node {node['node_key']!r} must be a JSON "
                             "object")
    return outputs


class ResumeRepo:
    """Resolving a failed or cancelled node."""

    def __init__(self, db: Database, machine: Machine) -> None:
        self.db, self.m = db, machine

    @transient
    def resolve_node(self, run_id: uuid.UUID, node_key: str, outputs: Any, *,
                     tenant: str | None, by: str) -> ResolveResult:
        """The node succeeds with `outputs`; what it failed or was cancelled with goes
        on (see going_on), and a finished run reopens (or ends at once, when nothing
        goes on). Recorded as a `node_resolved` event naming `by`."""
        q = queries()
        with self.db.tx() as cur:
            run = visible_run(cur, run_id, tenant)
            nodes = cur.execute(q["lock_top_nodes"], {"run_id": run_id}).fetchall()
            target = self._target(cur, run_id, node_key, nodes)
            check_outputs(target, outputs)
            was_open = run["status"] in OPEN_RUN_STATUSES
            if not was_open:
                self._check_finished(run, nodes)
            row = cur.execute(q["resolve_node"], {
                "id": target["id"], "version": target["version"],
                "outputs": Jsonb(outputs)}).fetchone()
            if row is None:  # (cannot happen under the lock; fenced all the same)
                raise Conflict(f"node {node_key!r} of run {run_id} changed meanwhile")
            work = UnitOfWork()
            reset, ready = self._reopen_nodes(cur, run_id, going_on(nodes, node_key))
            cur.execute(q["lock_run"], {"run_id": run_id})
            if was_open:
                self._count_open(work, run_id, target, len(reset))
            else:
                self._reopen_run(cur, work, run_id, nodes, target, len(reset))
            work.event(run_id, node_key, "node_resolved", target["attempts"], {
                "by": by, "status": target["status"],
                **({"error": target["error"]} if target["error"] else {})})
            self._move_on(cur, work, run_id, reset, ready)
            status = cur.execute(q["get_run"], {"run_id": run_id}).fetchone()["status"]
        return ResolveResult(run_id=run_id, node_key=node_key, status="succeeded",
                             run_status=status)

    @staticmethod
    def _target(cur: psycopg.Cursor[Any], run_id: uuid.UUID, node_key: str,
                nodes: list[dict[str, Any]]) -> dict[str, Any]:
        """The node to resolve (top level, failed or cancelled), or why not."""
        target = next((n for n in nodes if n["node_key"] == node_key), None)
        if target is None:
            if cur.execute(queries()["is_map_item"], {
                    "run_id": run_id, "node_key": node_key}).fetchone()["found"]:
                raise Conflict(f"{node_key!r} is an item of a map node: resolve the map node "
                               "itself, or retry its failed items (retry with items=failed)",
                               {"node": node_key})
            raise NotFound(f"run {run_id} has no node {node_key!r}")
        if target["status"] not in RESOLVABLE:
            raise Conflict(f"only a failed or cancelled node can be resolved; node "
                           f"{node_key!r} is {target['status']}",
                           {"node": node_key, "status": target["status"]})
        return target

    @staticmethod
    def _check_finished(run: dict[str, Any], nodes: list[dict[str, Any]]) -> None:
        """A finished run reopens only once its nodes stopped, and not as a child run:
        its end already ended its parent's node, which a resolve here would not
        change."""
        if run["parent_run_id"] is not None:
            raise Conflict(
                f"run {run['id']} is a child run that already ended its parent's node "
                f"{run['parent_node_key']!r}: resolve that node in run "
                f"{run['parent_run_id']} instead",
                {"parent_run_id": str(run["parent_run_id"]),
                 "parent_node_key": run["parent_node_key"]})
        if any(n["status"] in OPEN_NODE_STATUSES for n in nodes):
            raise Conflict(f"run {run['id']} still has running nodes; resolve when they "
                           "stop")

    @staticmethod
    def _reopen_nodes(cur: psycopg.Cursor[Any], run_id: uuid.UUID,
                      nodes: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
        """Reset the nodes that go on (their map items deleted: they expand again).
        Returns the reset rows and the keys to release at once: as a retry does, a node
        whose dependencies all succeeded is held by one pretend dependency and released
        like any other, so its `if` is checked again and a map node expands."""
        if not nodes:
            return [], []
        q = queries()
        cur.execute(q["delete_map_items"], {"run_id": run_id,
                                            "parent_ids": [n["id"] for n in nodes]})
        reset = cur.execute(q["reset_nodes_for_retry"], {
            "ids": [n["id"] for n in nodes], "statuses": [restart_status(n) for n in nodes],
            "deps_remaining": [max(n["deps_remaining"], 1) if n["depends_on"] else 0
                               for n in nodes],
        }).fetchall()
        ready = [n["node_key"] for n in nodes if n["depends_on"] and n["deps_remaining"] == 0]
        return reset, ready

    @staticmethod
    def _count_open(work: UnitOfWork, run_id: uuid.UUID, target: dict[str, Any],
                    reopened: int) -> None:
        """An open run's counts move by deltas (its other nodes may end meanwhile, each
        counted by its own transaction): the resolved node turns from failed (or
        cancelled) to succeeded, and the reopened nodes are no longer done."""
        counts = work.touch(run_id)
        counts.done -= reopened
        counts.succeeded += 1
        counts.failed -= target["status"] == "failed"

    @staticmethod
    def _reopen_run(cur: psycopg.Cursor[Any], work: UnitOfWork, run_id: uuid.UUID,
                    nodes: list[dict[str, Any]], target: dict[str, Any], reopened: int) -> None:
        """A finished run (none of its nodes open: all locked) is counted from its
        rows, with the resolved node still to end: its end, accounted like any node's,
        finishes the run at once when nothing else goes on."""
        others = [n for n in nodes if n["id"] != target["id"]]
        failed = [n for n in others if n["status"] == "failed"]
        error = {"node": failed[0]["node_key"], **failed[0]["error"]} \
            if failed and failed[0]["error"] else None
        cur.execute(queries()["reopen_resolved_run"], {
            "run_id": run_id, "remaining": reopened + 1, "failed": len(failed),
            "error": Jsonb(error) if error else None,
            "succeeded": sum(n["status"] == "succeeded" for n in others)})
        work.event(run_id, None, "run_queued", None, {"resolved": target["node_key"]})
        work.ended(run_id, "succeeded")

    def _move_on(self, cur: psycopg.Cursor[Any], work: UnitOfWork, run_id: uuid.UUID,
                 reset: list[dict[str, Any]], ready: list[str]) -> None:
        """Queue, release and start what goes on; account the run; write the events."""
        self.m.release.restart(cur, work, run_id, reset, ready, {"resolved": True})
        if reset:
            cur.execute(queries()["delete_void_streams"], {"run_id": run_id})
        self.m.accounting.account_runs(cur, work)
        work.flush(cur)
