"""A retry of a map node's failed items only (issue 34, item 3), inside the caller's
transaction (`RunRepo.retry_run(..., failed_items=True)`, dagq.store.runs): the items that
succeeded keep their outputs and do not run again; the others start again with fresh
attempts, within the node's max_parallel window, and the map node waits for them only.
Node rows (the map nodes, then their items) are locked before the run row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from dagq.errors import Conflict
from dagq.runtime.sqlfiles import queries
from dagq.store.machine.unit import UnitOfWork

if TYPE_CHECKING:
    from dagq.store.machine import Machine


@dataclass
class MapResume:
    """The map nodes of a retry whose items are retried one by one: per map node id, how
    many of its items are kept (succeeded) and how many run again."""

    kept: dict[int, int] = field(default_factory=dict)
    redo: dict[int, int] = field(default_factory=dict)

    @classmethod
    def plan(cls, cur: psycopg.Cursor[Any], run_id: uuid.UUID,
             nodes: list[dict[str, Any]]) -> MapResume:
        """Of the nodes a retry reopens (locked, from nodes_to_retry): the map nodes that
        expanded and whose dependencies all succeeded, so their items are still the
        right ones. A map node with nothing to redo (all its items succeeded: it was
        cancelled with its run) expands again like any other node."""
        candidates = {n["id"]: n["node_key"] for n in nodes
                      if n["mapped"] and n["depends_on"] and n["deps_not_succeeded"] == 0}
        if not candidates:
            return cls()
        rows = cur.execute(queries()["map_items_to_redo"],
                           {"parent_ids": sorted(candidates)}).fetchall()
        busy = sorted(candidates[r["id"]] for r in rows if r["running"])
        if busy:
            raise Conflict(f"map node(s) {', '.join(map(repr, busy))} of run {run_id} still "
                           f"have running items; retry when they stop", {"nodes": busy})
        return cls(kept={r["id"]: r["kept"] for r in rows if r["redo"]},
                   redo={r["id"]: r["redo"] for r in rows if r["redo"]})

    def reset(self, cur: psycopg.Cursor[Any]) -> tuple[list[dict[str, Any]],
                                                       list[dict[str, Any]]]:
        """Reset the items that did not succeed and reopen their map nodes (before the
        run's lock: node rows first). Returns (map nodes, items)."""
        if not self.redo:
            return [], []
        q = queries()
        ids = sorted(self.redo)
        items = cur.execute(q["reset_map_items"], {"parent_ids": ids}).fetchall()
        parents = cur.execute(q["reopen_map_nodes"], {
            "ids": ids, "redo": [self.redo[i] for i in ids]}).fetchall()
        return parents, items

    def started(self, cur: psycopg.Cursor[Any], work: UnitOfWork, machine: Machine,
                parents: list[dict[str, Any]], items: list[dict[str, Any]]) -> None:
        """Once the run reopened: the map nodes' events, the queues to wake, and the
        child runs of sub-workflow items (started only in an open run)."""
        for parent in parents:
            work.event(parent["run_id"], parent["node_key"], "node_queued", 0, {
                "retry": True, "items": self.redo[parent["id"]],
                "items_kept": self.kept[parent["id"]]})
        work.queues.update(item["queue"] for item in items if item["status"] == "queued")
        machine.children.start(cur, work, [item["id"] for item in items
                                           if item["status"] == "waiting"])
