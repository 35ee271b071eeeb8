"""Bulk cancel, set-based (issue 34, speed): a batch of runs cancelled in one transaction
of a few statements, instead of one transaction per run.

What it writes is what a single cancel (RunRepo.cancel_run, cancel_open_run) writes for
each run: its pending, queued and waiting nodes cancelled, the run cancelled with its
nodes left counted down, node_cancelled and run_cancelled events (their webhook
deliveries follow from the events' trigger), children cancelled and the node that
started a child run ended (Accounting.cancelled_run_finished), and after commit the
event streams woken and the workers told to stop the runs' running nodes.

Lock order: the batch's node rows in (run, key) order, then its run rows in id order,
then (sub-workflows only) what a finished run moves on, as a group commit of completions
locks them (release_dependents, then account_runs); so it waits for a worker's
completion, or a completion for it, but the two do not deadlock (a deadlock with a rarer
path is retried as a whole, as any transient error).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from dagq.runtime.sqlfiles import queries
from dagq.store.machine import Machine
from dagq.store.machine.unit import UnitOfWork
from dagq.store.tx import Database, transient

MAX_BATCH = 1000  # runs per transaction: its locks are held for milliseconds, not seconds


@dataclasses.dataclass
class CancelledRuns:
    """What a batch cancel did: the runs it cancelled, and each other run's reason
    (`already_cancelled`, `finished`: another status; `not_found`: unknown or another
    tenant's)."""

    cancelled: list[uuid.UUID] = dataclasses.field(default_factory=list)
    skipped: dict[uuid.UUID, str] = dataclasses.field(default_factory=dict)

    def skipped_by(self) -> Counter[str]:
        return Counter(self.skipped.values())


class BulkRepo:
    """Actions on many runs at once."""

    def __init__(self, db: Database, machine: Machine) -> None:
        self.db, self.m = db, machine

    @transient
    def cancel_runs(self, run_ids: Sequence[uuid.UUID], tenant: str | None) -> CancelledRuns:
        """Cancel the open runs of `run_ids` that are `tenant`'s (None: any tenant's) in one
        transaction, as a single cancel of each would. Idempotent: a run cancelled before
        is skipped as already_cancelled."""
        ids = list(dict.fromkeys(run_ids))
        if not 1 <= len(ids) <= MAX_BATCH:
            raise ValueError(f"cancel_runs takes 1 to {MAX_BATCH} run ids, not {len(ids)}")
        q = queries()
        with self.db.tx() as cur:
            nodes = cur.execute(q["cancel_nodes_of_runs"],
                                {"run_ids": ids, "tenant": tenant}).fetchall()
            top: dict[uuid.UUID, list[str]] = {}
            for node in nodes:
                if node["parent_id"] is None:  # map items are not counted by their run
                    top.setdefault(node["run_id"], []).append(node["node_key"])
            rows = cur.execute(q["cancel_runs"], {
                "run_ids": ids, "cancelled": [len(top.get(run_id, ())) for run_id in ids],
                "tenant": tenant}).fetchall()
            result = _outcome(ids, rows)
            if result.cancelled:
                self._finish(cur, [row for row in rows if row["cancelled"]], top)
        return result

    def _finish(self, cur: Any, rows: list[dict[str, Any]],
                top: dict[uuid.UUID, list[str]]) -> None:
        """The events of the runs just cancelled (nodes first, as cancel_open_run writes
        them), their children and parents (one pass for the batch), and the wake-ups."""
        work = UnitOfWork()
        for row in rows:
            for key in top.get(row["id"], ()):
                work.event(row["id"], key, "node_cancelled", None, {"reason": "run cancelled"})
            work.event(row["id"], None, "run_cancelled", None, None)
            work.cancelled.add(row["id"])  # its running nodes stop now
        self.m.children.runs_finished(cur, work, [
            {"id": row["id"], "parent_run_id": row["parent_run_id"], "parent_node_id": None,
             "has_children": True} for row in rows])
        self.m.accounting.account_runs(cur, work)
        work.flush(cur)


def _outcome(ids: list[uuid.UUID], rows: list[dict[str, Any]]) -> CancelledRuns:
    result = CancelledRuns()
    found = {row["id"]: row for row in rows}
    for run_id in ids:
        row = found.get(run_id)
        if row is None:
            result.skipped[run_id] = "not_found"
        elif row["cancelled"]:
            result.cancelled.append(run_id)
        else:
            result.skipped[run_id] = ("already_cancelled" if row["status"] == "cancelled"
                                      else "finished")
    return result
