"""`budget`: what a run may spend on model calls (the cost ledger, docs/cost.md), on a
workflow (each of its runs) or on a submit (instead of the workflow's)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_BUDGET_USD = 1_000_000_000.0


class Budget(BaseModel):
    """`{"max_cost_usd": X, "on_exceed": "fail" | "continue"}`. Past X (priced usage of
    the run and its child runs): `fail` fails the run with BudgetExceeded (what has not
    started is cancelled, running nodes are stopped); `continue` records a
    `budget_exceeded` event (an alert; counted in /metrics) and goes on."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, strict=True)

    max_cost_usd: float = Field(gt=0, le=MAX_BUDGET_USD, allow_inf_nan=False,
                                description="USD the run and its child runs may spend")
    on_exceed: Literal["fail", "continue"] = Field(
        "fail", description="what happens once the spend passes max_cost_usd")
