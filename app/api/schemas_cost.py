"""The pydantic models of the cost ledger's and budgets' requests and answers (beside
dagq.api.schemas, which is at its size limit): a submit with a `budget`, a tenant's
price table and daily budget."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dagq.api import schemas
from dagq.spec.budget import MAX_BUDGET_USD, Budget


class SubmitRunBody(schemas.SubmitRunBody):
    """POST /v1/runs (and each item of the batch): dagq.api.schemas' body, with a
    `budget` (same name: the OpenAPI document's component stays SubmitRunBody)."""

    budget: Budget | None = Field(
        None, description="what this run (and its child runs) may spend on model calls, "
                          "instead of the workflow's budget (docs/cost.md)")


class ModelPrice(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    input_usd_per_mtok: float | None = Field(None, ge=0, lt=1e9, allow_inf_nan=False)
    output_usd_per_mtok: float | None = Field(None, ge=0, lt=1e9, allow_inf_nan=False)


class PutTenantCostsBody(BaseModel):
    """PUT /v1/tenants/{name}/costs: what is given is replaced, what is left out kept;
    `daily_cost_usd: null` removes the daily budget, `prices: {}` the price table."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prices: dict[str, ModelPrice] | None = Field(
        None, max_length=1000,
        description="per model: USD per million input and output tokens, for usage "
                    "reported without cost_usd")
    daily_cost_usd: float | None = Field(
        None, gt=0, le=MAX_BUDGET_USD, allow_inf_nan=False,
        description="the tenant's daily budget (UTC days): past it, its submits get 429 "
                    "budget_exceeded until the day ends")


class TenantCosts(BaseModel):
    tenant: str
    prices: dict[str, Any] = Field(description="model -> {input_usd_per_mtok, "
                                               "output_usd_per_mtok}")
    daily_cost_usd: float | None = Field(description="None: no daily budget")
    spent_today_usd: float = Field(description="priced usage of this UTC day")
    updated_at: datetime | None = None
