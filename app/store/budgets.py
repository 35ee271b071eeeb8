"""Budgets the scheduler enforces (migration 037). A run's spend is charged from its
fresh usage rows in the transaction that writes them (dagq.store.usage.charge_usage: the
run's own budget and its ancestors'); once that transaction committed, the policy of
each budget it passed is enforced in a transaction of its own. Also tenants' daily
budgets, read for the submit check.

Enforcing after the charge's commit keeps the hot transactions' lock order (a completion
locks node rows, then run rows) and their cost: a completion whose usage passes no budget
pays one statement more, one without usage none. A process that dies between the two
leaves `exceeded_at` without `enforced_at`; the sweeper's pass enforces it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from dagq.runtime.sqlfiles import queries
from dagq.states import OPEN_RUN_STATUSES
from dagq.store.machine import Machine
from dagq.store.machine.unit import UnitOfWork
from dagq.store.tx import Database, transient

log = logging.getLogger("dagq.store")

ENFORCE_GRACE_S = 10.0  # the sweeper leaves a fresh pass to its charging process


def enforce_budgets(db: Database, machine: Machine, run_ids: Sequence[uuid.UUID]) -> int:
    """Apply each passed budget's policy (one short transaction per run); how many were
    enforced now. Never raises: what is left, the sweeper's pass enforces."""
    done = 0
    for run_id in run_ids:
        try:
            done += _enforce(db, machine, run_id)
        except Exception:  # noqa: BLE001 - the outcome is committed; the sweeper retries
            log.exception(
                "could not enforce the budget of run %s (the sweeper will)", run_id)
    return done


@transient
def _enforce(db: Database, machine: Machine, run_id: uuid.UUID) -> int:
    q = queries()
    with db.tx() as cur:
        budget = cur.execute(q["budget_to_enforce"], {"run_id": run_id}).fetchone()
        if budget is None:
            return 0  # enforced meanwhile
        data = {"max_cost_usd": float(budget["max_cost_usd"]),
                "spent_usd": float(budget["spent_usd"]), "on_exceed": budget["on_exceed"]}
        work = UnitOfWork()
        if budget["status"] in OPEN_RUN_STATUSES and budget["on_exceed"] == "fail":
            nodes = cur.execute(q["cancel_waiting_nodes"], {"run_id": run_id}).fetchall()
            cur.execute(q["lock_run"], {"run_id": run_id})
            work.run_error(run_id, {
                "type": "BudgetExceeded",
                "message": f"the run spent {data['spent_usd']:.6g} USD, past its budget of "
                           f"{data['max_cost_usd']:.6g} USD"}, fail_run=True)
            for node in nodes:
                if node["parent_id"] is None:
                    work.ended(run_id)
                    work.event(run_id, node["node_key"], "node_cancelled", None,
                               {"reason": "run budget exceeded"})
            work.cancelled.add(run_id)  # its running nodes stop now
        else:
            cur.execute(q["lock_run"], {"run_id": run_id})  # before writing its events
        work.event(run_id, None, "budget_exceeded", None, data)
        machine.accounting.account_runs(cur, work)
        work.flush(cur)
        cur.execute(q["budget_enforced"], {"run_id": run_id})
    return 1


class BudgetRepo:
    """dagq.run_budgets (the sweeper's pass) and tenants' daily budgets."""

    def __init__(self, db: Database, machine: Machine) -> None:
        self.db, self.m = db, machine

    def enforce_passed_budgets(self, *, limit: int = 100,
                               grace_s: float = ENFORCE_GRACE_S) -> int:
        """The sweeper's pass: passed budgets left unenforced (their process died)."""
        return enforce_budgets(self.db, self.m, self._unenforced(limit, grace_s))

    @transient
    def _unenforced(self, limit: int, grace_s: float) -> list[uuid.UUID]:
        with self.db.tx(one_statement=True) as cur:
            return [r["run_id"] for r in cur.execute(queries()["budgets_unenforced"], {
                "limit": limit, "grace_s": grace_s}).fetchall()]

    @transient
    def put_daily_budget(self, tenant: str, usd: float | None) -> dict[str, Any]:
        """Set (None: clear) `tenant`'s daily budget in USD (checked by the service)."""
        with self.db.tx(one_statement=True) as cur:
            return cur.execute(queries()["put_daily_budget"],
                               {"tenant": tenant, "usd": usd}).fetchone()

    @transient
    def daily_budgets(self) -> dict[str, float]:
        """Tenant -> daily budget (USD), for the tenants that have one."""
        with self.db.tx(one_statement=True) as cur:
            return {r["tenant"]: float(r["daily_cost_usd"])
                    for r in cur.execute(queries()["daily_budgets"])}

    @transient
    def spent_today(self, tenant: str) -> tuple[float, float]:
        """`tenant`'s priced usage this UTC day, and the seconds until the day ends."""
        with self.db.tx(one_statement=True) as cur:
            row = cur.execute(queries()["spent_today"], {"tenant": tenant}).fetchone()
        return float(row["spent_usd"]), float(row["day_left_s"])
