"""The sweeper's statements: reclaim, dead workers, heal, deadlines, waits, prune."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

import psycopg

from dagq.runtime.analyze import analyze_never_analyzed
from dagq.runtime.sqlfiles import queries
from dagq.states import OPEN_RUN_STATUSES
from dagq.store.machine import Machine
from dagq.store.machine.unit import UnitOfWork
from dagq.store.tx import LEASE_EXPIRED, Database, transient

log = logging.getLogger("dagq.store")


class MaintenanceRepo:
    """Each pass never waits for a row another transaction holds."""

    def __init__(self, db: Database, machine: Machine) -> None:
        self.db, self.m = db, machine

    def analyze_never_analyzed(self) -> list[str]:
        """ANALYZE the dagq tables that hold rows and have no statistics yet (a restore,
        a bulk load: dagq.runtime.analyze); their names."""
        with self.db.connection(None) as conn:
            return analyze_never_analyzed(conn)

    def reclaim_expired(self, *, now: datetime | None = None, limit: int = 100) -> dict[str, int]:
        """Expired leases count as failed attempts: requeue with backoff, or fail.

        Each lease is reclaimed in a short transaction of its own, so a run's lock is
        held for one lease only. A lease or run another transaction holds is skipped, not
        waited for (`skipped`; the next pass takes it), and every transition is fenced, so
        parallel sweepers reclaim each lease once. `candidates`: expired leases seen.
        """
        counts = {"reclaimed": 0, "retried": 0, "failed": 0, "skipped": 0, "candidates": 0}
        candidates = self._expired_leases(now, limit)
        counts["candidates"] = len(candidates)
        for node_id in candidates:
            outcome = self._reclaim_one(node_id, now)
            if outcome == "busy":
                counts["skipped"] += 1
            elif outcome != "stale":
                counts["reclaimed"] += 1
                counts["retried" if outcome == "retry" else "failed"] += 1
        return counts

    @transient
    def _expired_leases(self, now: datetime | None, limit: int) -> list[int]:
        with self.db.tx(one_statement=True) as cur:
            return [r["id"] for r in cur.execute(
                queries()["expired_leases"], {"now": now, "limit": limit}).fetchall()]

    @transient
    def _reclaim_one(self, node_id: int, now: datetime | None) -> str:
        with self.db.tx() as cur:
            if cur.execute(queries()["lock_expired_lease"],
                           {"id": node_id, "now": now}).fetchone() is None:
                return "busy" if self._still_expired(cur, node_id, now) else "stale"
            return self.m.failures.expire_lease(cur, node_id, LEASE_EXPIRED)

    @staticmethod
    def _still_expired(cur: psycopg.Cursor[Any], node_id: int, now: datetime | None) -> bool:
        """Not lockable: held by another transaction (busy), or already reclaimed?"""
        return bool(cur.execute(queries()["lease_still_expired"], {
            "id": node_id, "now": now}).fetchone())

    @transient
    def expire_dead_workers(
        self, *, dead_after_s: float, now: datetime | None = None
    ) -> dict[str, int]:
        """Workers silent for `dead_after_s` are dead; their leases expire at once."""
        with self.db.tx() as cur:
            row = cur.execute(queries()["expire_dead_worker_leases"], {
                "now": now, "dead_after_s": dead_after_s,
            }).fetchone()
        return {"workers": row["workers"], "leases": row["leases"]}

    @transient
    def heal_runs(self, *, limit: int = 100) -> int:
        """Finish open runs none of whose nodes is open (recounting from the nodes)."""
        q = queries()
        healed = 0
        with self.db.tx() as cur:
            for row in cur.execute(q["runs_needing_heal"], {"limit": limit}).fetchall():
                counts = cur.execute(q["count_run_nodes"], {"run_id": row["id"]}).fetchone()
                if counts["remaining"]:
                    continue
                # A run another transaction holds is not finished here: not waited for.
                run = cur.execute(q["try_lock_run"], {"run_id": row["id"]}).fetchone()
                if run is None or run["status"] not in OPEN_RUN_STATUSES:
                    continue
                status = cur.execute(q["final_run_status"], {  # the rule is in SQL
                    "failed": counts["failed"], "succeeded": counts["succeeded"],
                    "fail_fast": run["fail_fast"]}).fetchone()["status"]
                cur.execute(q["update_run_progress"], {
                    "run_id": row["id"], "nodes_remaining": 0,
                    "nodes_failed": counts["failed"], "nodes_succeeded": counts["succeeded"],
                    "status": status, "finished": True, "error": None,
                })
                work = UnitOfWork()
                work.event(row["id"], None, f"run_{status}", None, {"healed": True})
                # A healed child ends its sub-workflow node, a healed parent cancels any
                # open child left; accounted like any other end.
                self.m.children.runs_finished(cur, work, [{
                    "id": row["id"], "parent_run_id": run["parent_run_id"],
                    "parent_node_id": None, "has_children": True}])
                self.m.accounting.account_runs(cur, work)
                work.flush(cur)
                healed += 1
        if healed:
            log.warning("healed %d run(s) whose nodes had all finished", healed)
        return healed

    @transient
    def start_free_slots(self, *, limit: int = 100) -> int:
        """Start runs waiting for a concurrency slot that is free (the end of a run of
        their key found the next one locked). Never waits for a lock another holds."""
        with self.db.tx(one_statement=True) as cur:
            row = cur.execute(queries()["start_free_slots"], {"limit": limit}).fetchone()
        return int(row["started"])

    def enforce_deadlines(self, *, now: datetime | None = None, limit: int = 100) -> int:
        """Runs past their deadline: cancel what remains and fail the run. One read, then
        one short transaction per run (each retried on its own), so a run's lock is held
        for that run only."""
        return sum(self._expire_run(run_id) for run_id in self._runs_past_deadline(now, limit))

    @transient
    def _runs_past_deadline(self, now: datetime | None, limit: int) -> list[uuid.UUID]:
        with self.db.tx(one_statement=True) as cur:
            return [r["id"] for r in cur.execute(
                queries()["runs_past_deadline"], {"now": now, "limit": limit}).fetchall()]

    @transient
    def _expire_run(self, run_id: uuid.UUID) -> int:
        """Fail one run past its deadline, unless another transaction holds one of its
        waiting nodes or the run itself: then the next pass does it (never waited for)."""
        try:
            return self._expire_run_now(run_id)
        except psycopg.errors.LockNotAvailable:
            return 0

    def _expire_run_now(self, run_id: uuid.UUID) -> int:
        q = queries()
        with self.db.tx() as cur:
            cur.execute(q["lock_waiting_nodes_nowait"], {"run_id": run_id})
            run = cur.execute(q["try_lock_run"], {"run_id": run_id}).fetchone()
            if run is None or run["status"] not in OPEN_RUN_STATUSES:
                return 0
            nodes = cur.execute(q["cancel_waiting_nodes"], {"run_id": run_id}).fetchall()
            work = UnitOfWork()
            work.run_error(run_id, {"type": "DeadlineExceeded",
                                    "message": "the run passed its deadline"}, fail_run=True)
            for node in nodes:
                if node["parent_id"] is None:
                    work.ended(run_id)
                    work.event(run_id, node["node_key"], "node_cancelled", None,
                               {"reason": "run deadline passed"})
            self.m.accounting.account_runs(cur, work)
            work.flush(cur)
        return 1

    def fire_due_waits(self, *, now: datetime | None = None, limit: int = 100) -> dict[str, int]:
        """Waits whose deadline passed: timers succeed, signal waits apply on_timeout.

        Like reclaim: one read of candidates (node_tasks_wait_deadline), then a short
        fenced transaction per node that skips a node or run another transaction holds
        (`skipped`; the next pass takes it), so several sweepers fire each wait once."""
        counts = {"fired": 0, "timed_out": 0, "skipped": 0, "candidates": 0}
        candidates = self._due_waits(now, limit)
        counts["candidates"] = len(candidates)
        for node_id in candidates:
            outcome = self._fire_one(node_id, now)
            if outcome == "busy":
                counts["skipped"] += 1
            elif outcome != "stale":
                counts["fired" if outcome == "timer" else "timed_out"] += 1
        return counts

    @transient
    def _due_waits(self, now: datetime | None, limit: int) -> list[int]:
        with self.db.tx(one_statement=True) as cur:
            return [r["id"] for r in cur.execute(
                queries()["due_waits"], {"now": now, "limit": limit}).fetchall()]

    @transient
    def _fire_one(self, node_id: int, now: datetime | None) -> str:
        """Fire one due wait. Node rows before the run row, and never a wait: the rows
        its end may release, skip or cancel are locked NOWAIT first (another
        transaction holds one: 'busy', the next pass fires it)."""
        q = queries()
        try:
            with self.db.tx() as cur:
                node = cur.execute(q["lock_due_wait"], {"id": node_id, "now": now}).fetchone()
                if node is None:
                    still = cur.execute(q["wait_still_due"],
                                        {"id": node_id, "now": now}).fetchone()
                    return "busy" if still else "stale"
                cur.execute(q["lock_waiting_nodes_nowait"], {"run_id": node["run_id"]})
                if cur.execute(q["try_lock_run"], {"run_id": node["run_id"]}).fetchone() is None:
                    return "busy"
                work = UnitOfWork()
                self.m.release.fire_wait(cur, work, node)
                self.m.accounting.account_runs(cur, work)
                work.flush(cur)
        except psycopg.errors.LockNotAvailable:
            return "busy"
        return "timer" if "signal" not in node["wait_spec"] else "timeout"

    @transient
    def prune(self, *, retention_s: float, now: datetime | None = None, limit: int = 500) -> int:
        """Delete one batch of finished runs older than the retention (with their nodes;
        their events and chunks go with their partitions, see PartitionRepo; their
        streamed bytes stop counting against the tenant's cap now)."""
        q = queries()
        params = {"now": now, "retention_s": retention_s, "limit": limit}
        with self.db.tx() as cur:
            pruned = [r["id"] for r in cur.execute(q["prune_finished_runs"], params).fetchall()]
            if pruned:
                cur.execute(q["release_stream_bytes"], {"runs": pruned})
            cur.execute(q["prune_stopped_workers"], params)
        return len(pruned)
