"""The node state machine: a failed attempt retried, failed for good or stopped; runs
accounted and finished."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from dagq.backoff import backoff_delay
from dagq.runtime.sqlfiles import queries
from dagq.states import OPEN_RUN_STATUSES
from dagq.store.accounting import error_data
from dagq.store.core import STALE_COMPLETIONS
from dagq.store.subflows import Subflows
from dagq.store.work import UnitOfWork

log = logging.getLogger("dagq.store")


class Transitions(Subflows):
    """Failure outcomes and run accounting, inside a caller's transaction."""

    def _fail_attempt(
        self, cur: psycopg.Cursor[Any], node_id: int, version: int, error: dict[str, Any],
        *, retryable: bool, cancelled: bool, delay_s: float | None = None,
    ) -> str:
        """A worker's failed (or cancelled) attempt, fenced by its lease's version: a late
        outcome (the lease was lost) changes nothing and is counted."""
        node = cur.execute(queries()["node_for_failure"], {"id": node_id}).fetchone()
        if node is None or node["status"] != "running" or node["version"] != version:
            cur.execute(queries()["bump_counter"], {"name": STALE_COMPLETIONS, "by": 1})
            return "stale"
        return self._decide_failure(cur, UnitOfWork(), node, error, retryable=retryable,
                                    cancelled=cancelled, delay_s=delay_s)

    def _expire_lease(self, cur: psycopg.Cursor[Any], node_id: int,
                      error: dict[str, Any]) -> str:
        """The sweeper's: an expired lease (its row locked by the caller) counts as a
        failed, retryable attempt. 'busy' when another transaction holds the run: the
        sweeper never waits for it. It takes the run right after the node row, before
        the rest of the run's nodes (a fail fast cancels them)."""
        node = cur.execute(queries()["node_for_failure"], {"id": node_id}).fetchone()
        if node is None or node["status"] != "running":
            return "stale"  # the worker's own outcome won the race: not a late outcome
        run = cur.execute(queries()["try_lock_run"], {"run_id": node["run_id"]}).fetchone()
        if run is None:
            return "busy"
        node = {**node, "run_status": run["status"]}
        work = UnitOfWork()
        work.event(node["run_id"], node["node_key"], "node_lease_expired", node["attempts"],
                   error_data(error))
        return self._decide_failure(cur, work, node, error, retryable=True, cancelled=False)

    def _decide_failure(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, node: dict[str, Any],
        error: dict[str, Any], *, retryable: bool, cancelled: bool,
        delay_s: float | None = None,
    ) -> str:
        """Retry (after `delay_s`, else the node's backoff), fail for good, or stop a
        failed attempt. A run found finished ends the
        node: `cancelled` where it would have been retried (or was told to stop),
        `failed` if it failed for good.

        The run status read here is not under the run lock (node rows are locked before
        run rows): a finished run stays finished while one of its nodes runs, but one
        seen open may finish meanwhile, so retry_node reads it again under the lock.
        """
        would_retry = retryable and node["attempts"] < node["max_attempts"]
        if cancelled or node["run_status"] not in OPEN_RUN_STATUSES:
            status = "cancelled" if cancelled or would_retry else "failed"
            return self._stop_node(cur, work, node, error, status)
        if would_retry:
            return self._retry(cur, work, node, error, delay_s)
        return self._fail_for_good(cur, work, node, error)

    def _retry(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, node: dict[str, Any],
        error: dict[str, Any], delay_s: float | None = None,
    ) -> str:
        delay = delay_s if delay_s is not None else backoff_delay(
            node["attempts"], node["backoff_initial_s"], node["backoff_max_s"])
        row = cur.execute(queries()["retry_node"], {  # also takes the run lock
            "id": node["id"], "version": node["version"], "error": Jsonb(error),
            "delay_s": delay,
        }).fetchone()
        if row is None:
            return "stale"
        if row["status"] == "cancelled":  # the run finished before this failure committed
            return self._ended(cur, work, row, "cancelled", {
                **error_data(error), "reason": f"run {row['run_status']}"})
        work.event(node["run_id"], node["node_key"], "node_retry", node["attempts"], {
            **error_data(error), "delay_s": round(delay, 3),
            "available_at": row["available_at"].isoformat(),
        })
        work.queues.add(node["queue"])
        work.flush(cur)
        return "retry"

    def _fail_for_good(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, node: dict[str, Any],
        error: dict[str, Any],
    ) -> str:
        row = cur.execute(queries()["fail_node"], {
            "id": node["id"], "version": node["version"], "status": "failed",
            "error": Jsonb(error),
        }).fetchone()
        if row is None:
            return "stale"
        work.touch(row["run_id"])
        work.event(row["run_id"], row["node_key"], "node_failed", row["attempts"],
                   error_data(error))
        if row["parent_id"] is not None:
            mode = cur.execute(queries()["map_item_error_mode"],
                               {"parent_id": row["parent_id"]}).fetchone()
            if mode is not None and mode["mode"] in ("continue", "drop"):
                self._finish_map_item(cur, work, row, failed=True)
            else:
                self._fail_map_parent(cur, work, row, error, node["fail_fast"])
        else:
            self._node_failed(cur, work, row, error, node["fail_fast"])
        self._account_runs(cur, work)
        work.flush(cur)
        return "failed"

    def _stop_node(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, node: dict[str, Any],
        error: dict[str, Any], status: str,
    ) -> str:
        """A running node that was told to stop, or of a finished run, ends without retry
        (`status`: cancelled or failed)."""
        row = cur.execute(queries()["fail_node"], {
            "id": node["id"], "version": node["version"], "status": status,
            "error": Jsonb(error),
        }).fetchone()
        if row is None:
            return "stale"
        return self._ended(cur, work, row, status, error_data(error))

    def _ended(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, row: dict[str, Any], status: str,
        data: dict[str, Any],
    ) -> str:
        """Count a node that just ended without touching the rest of its run."""
        work.touch(row["run_id"])
        work.event(row["run_id"], row["node_key"], f"node_{status}", row["attempts"], data)
        if row["parent_id"] is None:
            work.ended(row["run_id"], status)
        self._account_runs(cur, work)
        work.flush(cur)
        return status

    def _account_runs(self, cur: psycopg.Cursor[Any], work: UnitOfWork) -> None:
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
                self._runs_finished(cur, work, finished)

    def _cancelled_run_finished(self, cur: psycopg.Cursor[Any], work: UnitOfWork,
                                run: dict[str, Any]) -> None:
        """A run just cancelled: the node that started it ends, its children cancel."""
        self._runs_finished(cur, work, [{
            "id": run["id"], "parent_run_id": run["parent_run_id"], "parent_node_id": None,
            "has_children": True}])
        self._account_runs(cur, work)

    def _start_new_children(self, cur: psycopg.Cursor[Any], run_ids: list[Any]) -> None:
        """In a submit's transaction: its runs' root sub-workflow nodes start children."""
        work = UnitOfWork()
        self._start_root_children(cur, work, run_ids)
        self._account_runs(cur, work)
        work.flush(cur)
