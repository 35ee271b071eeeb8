"""A failed attempt, inside a caller's transaction: retried, failed for good or stopped
(a worker's failure, an expired lease)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from dagq.backoff import backoff_delay
from dagq.runtime.sqlfiles import queries
from dagq.states import OPEN_RUN_STATUSES
from dagq.store.machine.unit import UnitOfWork, error_data
from dagq.store.tx import STALE_COMPLETIONS

if TYPE_CHECKING:
    from dagq.store.machine import Machine

log = logging.getLogger("dagq.store")


class Failures:
    """Failure outcomes, inside a caller's transaction."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine

    def fail_attempt(
        self, cur: psycopg.Cursor[Any], node_id: int, version: int, error: dict[str, Any],
        *, retryable: bool, cancelled: bool, delay_s: float | None = None,
    ) -> str:
        """A worker's failed (or cancelled) attempt, fenced by its lease's version: a late
        outcome (the lease was lost) changes nothing and is counted."""
        node = cur.execute(queries()["node_for_failure"], {"id": node_id}).fetchone()
        if node is None or node["status"] != "running" or node["version"] != version:
            cur.execute(queries()["bump_counter"], {"name": STALE_COMPLETIONS, "by": 1})
            return "stale"
        return self.decide(cur, UnitOfWork(), node, error, retryable=retryable,
                           cancelled=cancelled, delay_s=delay_s)

    def expire_lease(self, cur: psycopg.Cursor[Any], node_id: int,
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
        return self.decide(cur, work, node, error, retryable=True, cancelled=False)

    def decide(
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
            return self.stop_node(cur, work, node, error, status)
        if would_retry:
            return self.retry(cur, work, node, error, delay_s)
        return self.fail_for_good(cur, work, node, error)

    def retry(
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
            return self.ended(cur, work, row, "cancelled", {
                **error_data(error), "reason": f"run {row['run_status']}"})
        work.event(node["run_id"], node["node_key"], "node_retry", node["attempts"], {
            **error_data(error), "delay_s": round(delay, 3),
            "available_at": row["available_at"].isoformat(),
        })
        work.queues.add(node["queue"])
        work.flush(cur)
        return "retry"

    def fail_for_good(
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
                self.m.release.finish_map_item(cur, work, row, failed=True)
            else:
                self.m.release.fail_map_parent(cur, work, row, error, node["fail_fast"])
        else:
            self.m.release.node_failed(cur, work, row, error, node["fail_fast"])
        self.m.accounting.account_runs(cur, work)
        work.flush(cur)
        return "failed"

    def stop_node(
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
        return self.ended(cur, work, row, status, error_data(error))

    def ended(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, row: dict[str, Any], status: str,
        data: dict[str, Any],
    ) -> str:
        """Count a node that just ended without touching the rest of its run."""
        work.touch(row["run_id"])
        work.event(row["run_id"], row["node_key"], f"node_{status}", row["attempts"], data)
        if row["parent_id"] is None:
            work.ended(row["run_id"], status)
        self.m.accounting.account_runs(cur, work)
        work.flush(cur)
        return status
