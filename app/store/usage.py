"""The cost ledger: model usage per node attempt (dagq.node_usage, migration 036), a
run's usage as GET /v1/runs/{id} shows it, tenants' price tables, the metrics' tail.

A worker writes an attempt's usage in the transaction that records the attempt's outcome
(`write_usage`, called by the lease repository before the outcome), so a node that
completes without a usage() call costs nothing more, and one that calls it pays one more
statement in a transaction it commits anyway. An attempt whose outcome is discarded (its
lease was lost: a zombie) writes its usage alone (`record_usage`), marked fenced.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from dagq.errors import InvalidRequest
from dagq.runtime.sqlfiles import queries
from dagq.store.budgets import enforce_budgets
from dagq.store.machine import Machine
from dagq.store.tx import Database, transient
from dagq.usage import AttemptUsage, RunUsage, Spend, UsageRecord

PRICE_KEYS = ("input_usd_per_mtok", "output_usd_per_mtok")
MAX_PRICED_MODELS = 1000


def write_usage(cur: psycopg.Cursor[Any], records: Sequence[UsageRecord]) -> list[dict[str, Any]]:
    """Record `records` in the caller's transaction (before the attempts' outcomes: the
    fence compares with the lease as the attempt left it); the rows written."""
    if not records:
        return []
    return cur.execute(queries()["record_usage"],
                       {"rows": Jsonb([r.row() for r in records])}).fetchall()


def charge_usage(cur: psycopg.Cursor[Any],
                 records: Sequence[UsageRecord]) -> tuple[list[uuid.UUID], int]:
    """Write `records` (write_usage) and charge the priced ones to the budgets of their
    runs and ancestors (migration 037), in the caller's transaction: the runs whose
    budget this charge passed (enforce them with dagq.store.budgets.enforce_budgets once
    the transaction committed), and how many rows were new."""
    written = write_usage(cur, records)
    costs: dict[uuid.UUID, Decimal] = defaultdict(Decimal)
    for row in written:
        if row["cost_usd"] and row["budgeted"]:  # a run with no budget: nothing to charge
            costs[row["run_id"]] += row["cost_usd"]
    if not costs:
        return [], len(written)
    runs = sorted(costs)
    rows = cur.execute(queries()["charge_budgets"], {
        "runs": runs, "costs": [costs[r] for r in runs]}).fetchall()
    return [row["run_id"] for row in rows], len(written)


def check_prices(prices: Any) -> dict[str, dict[str, float]]:
    """A price table: {model: {input_usd_per_mtok: X, output_usd_per_mtok: Y}}, prices
    finite numbers >= 0 (InvalidRequest naming the problem)."""
    if not isinstance(prices, dict):
        raise InvalidRequest("prices must be a JSON object {model: {input_usd_per_mtok, "
                             "output_usd_per_mtok}}")
    if len(prices) > MAX_PRICED_MODELS:
        raise InvalidRequest(f"prices: at most {MAX_PRICED_MODELS} models")
    for model, price in prices.items():
        if not isinstance(model, str) or not 1 <= len(model) <= 200:
            raise InvalidRequest("prices: a model name must be 1 to 200 characters")
        if not isinstance(price, dict) or not price or set(price) - set(PRICE_KEYS):
            raise InvalidRequest(f"prices[{model!r}] must be an object with "
                                 f"{' and/or '.join(PRICE_KEYS)}")
        for key, value in price.items():
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not 0 <= value < 1e9):
                raise InvalidRequest(f"prices[{model!r}].{key} must be a number from 0 "
                                     f"(USD per million tokens), not {value!r:.40}")
    return prices


def _spend(row: dict[str, Any] | None) -> Spend:
    if row is None:
        return Spend()
    return Spend(input_tokens=row["input_tokens"] or 0, output_tokens=row["output_tokens"] or 0,
                 cost_usd=float(row["cost_usd"] or 0))


def _sum(rows: list[AttemptUsage]) -> Spend:
    return Spend(input_tokens=sum(r.input_tokens for r in rows),
                 output_tokens=sum(r.output_tokens for r in rows),
                 cost_usd=sum(r.cost_usd or 0.0 for r in rows))


class UsageRepo:
    """dagq.node_usage and dagq.tenant_costs."""

    def __init__(self, db: Database, machine: Machine) -> None:
        self.db, self.m = db, machine

    def record_usage(self, records: Sequence[UsageRecord]) -> int:
        """Record usage on its own (an attempt whose outcome was discarded), charged to
        budgets like any; how many rows were new (a retried write: 0)."""
        if not records:
            return 0
        over_budget, written = self._record(records)
        enforce_budgets(self.db, self.m, over_budget)  # once committed
        return written

    @transient
    def _record(self, records: Sequence[UsageRecord]) -> tuple[list[uuid.UUID], int]:
        with self.db.tx() as cur:
            return charge_usage(cur, records)

    @transient
    def run_usage(self, run_id: uuid.UUID) -> RunUsage:
        """A run's usage per attempt, its own total (and the zombies' part), the total
        with its descendant runs, and (a rerun) what its copied nodes saved."""
        q = queries()
        with self.db.tx() as cur:
            rows = cur.execute(q["run_usage_attempts"], {"run_id": run_id}).fetchall()
            below = _spend(cur.execute(q["run_usage_tree"], {"run_id": run_id}).fetchone())
            saved = cur.execute(q["run_usage_saved"], {"run_id": run_id}).fetchone()
        attempts = [AttemptUsage(**{**r, "cost_usd": None if r["cost_usd"] is None
                                    else float(r["cost_usd"])}) for r in rows]
        own = _sum(attempts)
        total = Spend(input_tokens=own.input_tokens + below.input_tokens,
                      output_tokens=own.output_tokens + below.output_tokens,
                      cost_usd=own.cost_usd + below.cost_usd)
        kept = _spend(saved)
        return RunUsage(attempts=attempts, own=own, total=total,
                        fenced=_sum([a for a in attempts if a.fenced]),
                        saved=kept if kept != Spend() else None)

    @transient
    def put_prices(self, tenant: str, prices: Any) -> dict[str, Any]:
        """Replace `tenant`'s price table (checked first: nothing written when bad)."""
        checked = check_prices(prices)
        with self.db.tx(one_statement=True) as cur:
            return cur.execute(queries()["put_prices"],
                               {"tenant": tenant, "prices": Jsonb(checked)}).fetchone()

    @transient
    def get_costs(self, tenant: str) -> dict[str, Any]:
        """`tenant`'s price table ({} when it has none)."""
        with self.db.tx(one_statement=True) as cur:
            row = cur.execute(queries()["get_costs"], {"tenant": tenant}).fetchone()
        return row or {"tenant": tenant, "prices": {}, "daily_cost_usd": None,
                       "updated_at": None}

    @transient
    def usage_tail(self, after: int, *, limit: int, settle_s: float) -> list[dict[str, Any]]:
        """Ledger rows after id `after`, at least `settle_s` old, in id order."""
        with self.db.tx(one_statement=True) as cur:
            return cur.execute(queries()["usage_tail"], {
                "after": after, "limit": limit, "settle_s": settle_s}).fetchall()

    @transient
    def last_usage_id(self) -> int:
        with self.db.tx(one_statement=True) as cur:
            return int(cur.execute(queries()["last_usage_id"]).fetchone()["id"])
