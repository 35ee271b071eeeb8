"""How a node's end moves through its run: release, skip, map expansion, failure."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from dagq.runtime.sqlfiles import queries
from dagq.spec.workflow import MAX_MAP_ITEMS
from dagq.store.machine.unit import UnitOfWork, error_data
from dagq.store.machine.waits import (
    due_outcome,
    parse_until,
    signal_outputs,
    wait_deadline,
    waiting_data,
)

if TYPE_CHECKING:
    from dagq.store.machine import Machine

log = logging.getLogger("dagq.store")


def restart_status(node: dict[str, Any]) -> str:
    """A node reset by a retry or a resolve starts as: pending when it has dependencies
    (released by them, or at once: see Release.restart); a root queued, or waiting when
    it is a wait or sub-workflow node."""
    if node["depends_on"]:
        return "pending"
    return "waiting" if node["wait_spec"] is not None or node["subflow"] is not None \
        else "queued"


class Release:
    """Dependents released or skipped, map nodes expanded and finished, wait nodes
    started and ended, a failed node's run cancelled (fail fast) or its descendants
    skipped.

    Sub-workflow nodes start and cancel child runs through the machine's `children`
    (dagq.store.machine.children).
    """

    def __init__(self, machine: Machine) -> None:
        self.m = machine

    def node_failed(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, row: dict[str, Any],
        error: dict[str, Any], fail_fast: bool,
    ) -> None:
        """A top-level node failed for good: cancel the run's rest, or skip downstream."""
        q = queries()
        run_id = row["run_id"]
        work.ended(run_id, "failed")
        work.run_error(run_id, {"node": row["node_key"], **error}, fail_run=fail_fast)
        if fail_fast:
            for other in cur.execute(q["cancel_waiting_nodes"], {"run_id": run_id}).fetchall():
                if other["parent_id"] is None:
                    work.ended(run_id)
                    work.event(run_id, other["node_key"], "node_cancelled", None,
                               {"reason": f"node {row['node_key']!r} failed"})
            return
        skipped = cur.execute(q["skip_descendants"], {
            "run_id": run_id, "dependents": row["dependents"],
        }).fetchall()
        for other in skipped:
            work.ended(run_id)
            work.event(run_id, other["node_key"], "node_skipped", None,
                       {"reason": f"upstream node {row['node_key']!r} failed"})

    def release(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork,
        pairs: list[tuple[uuid.UUID, str]], *, skipped: bool,
    ) -> None:
        """Count terminal dependencies on their dependents (`pairs`: one (run, dependent)
        per finished dependency); queue, skip or expand those now ready, and carry
        skips downstream."""
        q = queries()
        frontier: list[tuple[list[tuple[uuid.UUID, str]], bool]] = [(pairs, skipped)]
        while frontier:
            pairs, was_skipped = frontier.pop()
            if not pairs:
                continue
            rows = cur.execute(q["release_dependents"], {
                "run_ids": [run_id for run_id, _ in pairs], "keys": [k for _, k in pairs],
                "skipped": int(was_skipped),
            }).fetchall()
            skips: list[tuple[uuid.UUID, str]] = []
            waits = [row for row in rows
                     if row["status"] == "waiting" and row["subflow"] is None]
            for row in rows:
                run_id = row["run_id"]
                if row["status"] == "queued":
                    work.event(run_id, row["node_key"], "node_queued", 0)
                    work.release(row["queue"], row["priority"], row["id"])
                elif row["status"] == "skipped":
                    work.ended(run_id)
                    work.event(run_id, row["node_key"], "node_skipped")
                    skips.extend((run_id, key) for key in row["dependents"])
                elif row["status"] == "running":
                    self.expand_map(cur, work, run_id, row["id"], frontier)
            if waits:
                self.begin_waits(cur, work, waits)
            self.m.children.start(cur, work, [row["id"] for row in rows if row["status"]
                                              == "waiting" and row["subflow"] is not None])
            frontier.append((skips, True))

    def restart(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, run_id: uuid.UUID,
        reset: list[dict[str, Any]], ready: list[str], data: dict[str, Any],
    ) -> None:
        """Nodes a retry or a resolve reset (rows of reset_nodes_for_retry) start again:
        roots queued (node_queued with `data`) or waiting, and the `ready` keys released
        (each held by one pretend dependency, so its `if` and `map` are evaluated)."""
        for node in reset:
            if node["status"] == "queued":
                work.event(run_id, node["node_key"], "node_queued", 0, data)
                work.queues.add(node["queue"])
        self.release(cur, work, [(run_id, key) for key in ready], skipped=False)
        self.begin_waits(cur, work, [
            n for n in reset if n["status"] == "waiting" and n["subflow"] is None])
        self.m.children.start(cur, work, [
            n["id"] for n in reset if n["status"] == "waiting" and n["subflow"] is not None])

    def begin_waits(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, rows: list[dict[str, Any]]
    ) -> None:
        """Wait nodes that just became `waiting` (rows: id, run_id, node_key, wait_spec):
        set their deadlines, write node_waiting, and give each signal wait the oldest
        buffered signal of its name. A bad `until_path` value fails the node."""
        if not rows:
            return
        q = queries()
        ids: list[int] = []
        offsets: list[float | None] = []
        untils: list[Any] = []
        bad: list[tuple[dict[str, Any], str]] = []
        for row in rows:
            offset, until = wait_deadline(row["wait_spec"])
            path = row["wait_spec"].get("until_path")
            if path is not None:
                value = cur.execute(q["wait_path_value"], {
                    "run_id": row["run_id"], **path}).fetchone()
                until, problem = parse_until(value and value["value"],
                                             f"{path['dep']}.{path['path']}")
                if problem is not None:
                    bad.append((row, problem))
            ids.append(row["id"])
            offsets.append(offset)
            untils.append(until)
        started = cur.execute(q["set_wait_deadlines"], {
            "ids": ids, "offsets": offsets, "untils": untils}).fetchall()
        for node in sorted(started, key=lambda n: n["id"]):
            work.touch(node["run_id"])
            work.event(node["run_id"], node["node_key"], "node_waiting", 0,
                       waiting_data(node["wait_spec"], node["wait_until"]))
        for row, problem in bad:
            self.end_wait(cur, work, row["id"], "failed",
                          error={"type": "WaitError", "message": problem})
        for node in sorted(started, key=lambda n: n["id"]):
            if "signal" in node["wait_spec"]:
                self.take_buffered(cur, work, node)

    def take_buffered(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, node: dict[str, Any]
    ) -> None:
        """A signal that arrived before this node waited ends its wait now."""
        signal = cur.execute(queries()["take_buffered_signal"], {
            "run_id": node["run_id"], "name": node["wait_spec"]["signal"],
            "node_key": node["node_key"], "node_id": node["id"]}).fetchone()
        if signal is None:
            return
        work.event(node["run_id"], node["node_key"], "signal_received", None, {
            "signal": signal["name"], "signal_id": signal["signal_id"], "buffered": True})
        self.end_wait(cur, work, node["id"], "succeeded", outputs=signal_outputs(
            signal["name"], signal["signal_id"], signal["data"]))

    def fire_wait(self, cur: psycopg.Cursor[Any], work: UnitOfWork, node: dict[str, Any]) -> str:
        """A wait whose deadline passed (its row locked): a timer succeeds, a signal wait
        applies its on_timeout. Returns the node's new status."""
        status, outputs, error = due_outcome(node["wait_spec"], node["wait_until"])
        reason = "timer fired" if "signal" not in node["wait_spec"] else "wait timed out"
        self.end_wait(cur, work, node["id"], status, outputs=outputs, error=error,
                      reason=reason)
        return status

    def end_wait(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, node_id: int, status: str, *,
        outputs: Any = None, error: dict[str, Any] | None = None, reason: str | None = None,
    ) -> bool:
        """End a waiting node (fenced on `waiting`) as succeeded, skipped or failed, and
        move that through its run like any node's end. False if it was not waiting."""
        row = cur.execute(queries()["end_wait"], {
            "id": node_id, "status": status,
            "outputs": Jsonb(outputs) if outputs is not None else None,
            "error": Jsonb(error) if error is not None else None}).fetchone()
        if row is None:
            return False
        run_id = row["run_id"]
        if status == "failed" and error is not None:
            work.event(run_id, row["node_key"], "node_failed", 0, error_data(error))
            self.node_failed(cur, work, row, error, self.fail_fast(cur, run_id))
            return True
        work.ended(run_id, status)
        work.event(run_id, row["node_key"], f"node_{status}", 0,
                   {"reason": reason} if reason else {})
        self.release(cur, work, [(run_id, key) for key in row["dependents"]],
                     skipped=status == "skipped")
        return True

    def expand_map(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, run_id: uuid.UUID,
        node_id: int, frontier: list[tuple[list[tuple[uuid.UUID, str]], bool]],
    ) -> None:
        q = queries()
        src = cur.execute(q["map_source"], {"id": node_id}).fetchone()
        items = src["items"]
        problem = None
        if not isinstance(items, list):
            problem = f"map path did not resolve to a list (got {type(items).__name__})"
        elif len(items) > MAX_MAP_ITEMS:
            problem = f"map over {len(items)} items exceeds the limit of {MAX_MAP_ITEMS}"
        if problem is not None:
            error = {"type": "MapError", "message": problem}
            row = cur.execute(q["fail_map_parent"], {
                "parent_id": node_id, "error": Jsonb(error), "attempts": 0,
            }).fetchone()
            work.event(run_id, src["node_key"], "node_failed", 0, error_data(error))
            fail_fast = self.fail_fast(cur, run_id)
            self.node_failed(cur, work, row, error, fail_fast)
            return
        if not items:
            row = cur.execute(q["succeed_empty_map"], {"id": node_id}).fetchone()
            work.ended(run_id, "succeeded")
            work.event(run_id, src["node_key"], "node_succeeded", 0, {"items": 0})
            frontier.append(([(run_id, key) for key in row["dependents"]], False))
            return
        cur.execute(q["insert_map_items"], {
            "run_id": run_id, "node_key": src["node_key"], "executor": src["executor"],
            "queue": src["queue"], "priority": src["priority"],
            "max_attempts": src["max_attempts"], "timeout_s": src["timeout_s"],
            "backoff_initial_s": src["backoff_initial_s"],
            "backoff_max_s": src["backoff_max_s"], "params": Jsonb(src["params"]),
            "depends_on": src["depends_on"], "parent_id": node_id, "items": Jsonb(items),
            "max_parallel": src["max_parallel"],
            "subflow": Jsonb(src["subflow"]) if src["subflow"] else None,
        })
        cur.execute(q["set_map_remaining"], {"id": node_id, "count": len(items)})
        work.event(run_id, src["node_key"], "node_queued", 0, {"items": len(items)})
        if src["subflow"] is None:
            work.queues.add(src["queue"])
            return
        self.m.children.start(cur, work, [r["id"] for r in cur.execute(
            q["waiting_subflow_nodes"], {"run_ids": [run_id], "parent_id": node_id})])

    def finish_map_item(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, row: dict[str, Any], *,
        failed: bool = False,
    ) -> None:
        """An item ended (`failed`: for good, its map node going on without it): count
        it, release the next waiting item (max_parallel), report progress, and finish the
        map node after its last item."""
        q = queries()
        parent = cur.execute(q["finish_map_item"], {
            "parent_id": row["parent_id"], "attempts": row["attempts"], "failed": int(failed),
        }).fetchone()
        if parent is None:
            return
        run_id = parent["run_id"]
        progress = {k: parent[k] for k in ("items_done", "items_failed", "items_total")}
        if parent["status"] != "succeeded":
            if parent["windowed"]:
                nxt = cur.execute(q["release_next_map_item"],
                                  {"parent_id": parent["id"]}).fetchone()
                if nxt is not None and nxt["status"] == "waiting":  # a sub-workflow item
                    self.m.children.start(cur, work, [nxt["id"]])
                elif nxt is not None:
                    work.release(nxt["queue"], nxt["priority"], nxt["id"])
            work.event(run_id, parent["node_key"], "node_progress", parent["attempts"],
                       progress)
            return
        work.ended(run_id, "succeeded")
        work.event(run_id, parent["node_key"], "node_succeeded", parent["attempts"],
                   progress if parent["items_failed"] else None)
        self.release(cur, work, [(run_id, key) for key in parent["dependents"]],
                     skipped=False)

    def fail_map_parent(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, item: dict[str, Any],
        error: dict[str, Any], fail_fast: bool,
    ) -> None:
        """An item failed for good, so its map node fails and its other items stop."""
        q = queries()
        item_error = {**error, "item": item["node_key"]}
        parent = cur.execute(q["fail_map_parent"], {
            "parent_id": item["parent_id"], "error": Jsonb(item_error),
            "attempts": item["attempts"],
        }).fetchone()
        if parent is None:
            return
        if cur.execute(q["cancel_map_items"], {"parent_id": parent["id"]}).fetchall():
            self.m.children.cancel_orphans(cur, work, [parent["run_id"]])
        work.event(parent["run_id"], parent["node_key"], "node_failed", parent["attempts"],
                   error_data(item_error))
        self.node_failed(cur, work, parent, item_error, fail_fast)

    def fail_fast(self, cur: psycopg.Cursor[Any], run_id: uuid.UUID) -> bool:
        row = cur.execute(queries()["get_run"], {"run_id": run_id}).fetchone()
        return bool(row and row["fail_fast"])
