"""Runs accounted, inside a caller's transaction: what ended is counted under each run's
lock, runs with nothing left finish (dagq.final_run_status, migration 007), and their
ends move on to parent nodes and children. Also cancelling an open run."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg

from dagq.runtime.sqlfiles import queries
from dagq.states import OPEN_RUN_STATUSES
from dagq.store.machine.unit import UnitOfWork, error_data

if TYPE_CHECKING:
    from dagq.store.machine import Machine

# Called with (cursor, unit of work, the cancelled run's row) once a run is cancelled.
Finished = Callable[[psycopg.Cursor[Any], UnitOfWork, dict[str, Any]], None]


def cancel_open_run(cur: psycopg.Cursor[Any], run_id: uuid.UUID,
                    data: dict[str, Any] | None = None,
                    finished: Finished | None = None) -> bool:
    """Cancel an open run in this transaction (node rows, then the run row: the usual
    lock order); the workers running its nodes are told after commit, and stop them.
    `data`: of run_cancelled. `finished` (`Accounting.cancelled_run_finished`) then ends
    the node that started the run and cancels its children, before the events are
    written."""
    q = queries()
    nodes = cur.execute(q["cancel_waiting_nodes"], {"run_id": run_id}).fetchall()
    top = [n for n in nodes if n["parent_id"] is None]
    cur.execute(q["lock_run"], {"run_id": run_id})
    row = cur.execute(q["cancel_run"], {"run_id": run_id, "cancelled": len(top)}).fetchone()
    if not row:
        return False
    work = UnitOfWork()
    for node in top:
        work.event(run_id, node["node_key"], "node_cancelled", None,
                   {"reason": "run cancelled"})
    work.event(run_id, None, "run_cancelled", None, data)
    work.cancelled.add(run_id)  # its running nodes stop now, not at their next heartbeat
    if finished is not None:
        finished(cur, work, row)
    work.flush(cur)
    return True


class Accounting:
    """Run accounting and finishing."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine

    def account_runs(self, cur: psycopg.Cursor[Any], work: UnitOfWork) -> None:
        """Lock the unit of work's runs (id order), count what ended, finish those with
        nothing left.

        Also the run lock that orders every run's events: every run this transaction
        writes events for is touched, and accounted before the events are inserted.
        Runs that finish end the nodes that started them (sub-workflows), which may
        finish those nodes' runs in turn: accounted again until nothing is left.
        """
        while (accounts := work.take_accounts()) is not None:
            rows = cur.execute(queries()["account_runs"], {"runs": accounts}).fetchall()
            finished = [row for row in rows if row["old_status"] in OPEN_RUN_STATUSES
                        and row["status"] not in OPEN_RUN_STATUSES]
            for row in finished:
                work.event(row["id"], None, f"run_{row['status']}", None,
                           error_data(row["error"]))
            if finished:
                self.m.children.runs_finished(cur, work, finished)

    def cancelled_run_finished(self, cur: psycopg.Cursor[Any], work: UnitOfWork,
                                run: dict[str, Any]) -> None:
        """A run just cancelled: the node that started it ends, its children cancel."""
        self.m.children.runs_finished(cur, work, [{
            "id": run["id"], "parent_run_id": run["parent_run_id"], "parent_node_id": None,
            "has_children": True}])
        self.account_runs(cur, work)

    def start_new_children(self, cur: psycopg.Cursor[Any], run_ids: list[Any]) -> None:
        """In a submit's transaction: its runs' root sub-workflow nodes start children."""
        work = UnitOfWork()
        self.m.children.start_roots(cur, work, run_ids)
        self.account_runs(cur, work)
        work.flush(cur)
