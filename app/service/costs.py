"""The cost ledger and budgets, as the API and the CLI use them: tenants' price tables
and daily budgets (checked, then stored), a submit's `budget` checked, and the refusal
of new submits of a tenant past its daily budget (429 budget_exceeded, Retry-After at
the end of the UTC day).

The daily check costs a budget-less tenant a set lookup: the tenants that have a daily
budget are read at most every DAILY_TTL_S (the API's SpecCache's ttl_s) per process, and
so is each one's spend today. A tenant's submits may therefore pass its budget by what it
spends in that time, and a new budget applies within it.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from typing import Any

from pydantic import ValidationError

from dagq.errors import BudgetExceeded, InvalidRequest
from dagq.spec.budget import MAX_BUDGET_USD, Budget
from dagq.store import Store
from dagq.store.usage import check_prices

__all__ = ["check_budget", "check_daily_cost", "check_prices", "set_tenant_costs",
           "tenant_costs", "daily_refusals", "DailyBudgets"]

DAILY_TTL_S = 2.0
UNSET: Any = object()  # an option left out: kept as it is


def check_budget(budget: Any) -> Budget | None:
    """A submit's `budget` (a Budget, a JSON object or None), checked (422 naming why)."""
    if budget is None or isinstance(budget, Budget):
        return budget
    try:
        return Budget.model_validate(budget)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"budget{'.' + where if where else ''}: {first['msg']}") from None


def check_daily_cost(usd: Any) -> float | None:
    if usd is None:
        return None
    if (isinstance(usd, bool) or not isinstance(usd, int | float) or not math.isfinite(usd)
            or not 0 < usd <= MAX_BUDGET_USD):
        raise InvalidRequest(f"daily_cost_usd must be a number above 0 and at most "
                             f"{MAX_BUDGET_USD:,.0f}, or null (no daily budget)")
    return float(usd)


def set_tenant_costs(repo: Store, name: str, *, prices: Any = UNSET,
                     daily_cost_usd: Any = UNSET) -> dict[str, Any]:
    """Replace what is given of a tenant's price table and daily budget (None: no daily
    budget); what is left out is kept. Every value is checked before anything is
    written."""
    if not name or len(name) > 200 or "\x00" in name:
        raise InvalidRequest("a tenant name needs 1 to 200 characters")
    checked = check_prices(prices) if prices is not UNSET else UNSET
    usd = check_daily_cost(daily_cost_usd) if daily_cost_usd is not UNSET else UNSET
    if checked is not UNSET:
        repo.usage.put_prices(name, checked)
    if usd is not UNSET:
        repo.budgets.put_daily_budget(name, usd)
    return tenant_costs(repo, name)


def tenant_costs(repo: Store, name: str) -> dict[str, Any]:
    """{tenant, prices, daily_cost_usd, spent_today_usd}."""
    row = repo.usage.get_costs(name)
    spent, _ = repo.budgets.spent_today(name)
    daily = row.get("daily_cost_usd")
    return {"tenant": name, "prices": row["prices"],
            "daily_cost_usd": None if daily is None else float(daily),
            "spent_today_usd": spent, "updated_at": row["updated_at"]}


class DailyBudgets:
    """One process's view of the tenants' daily budgets and spend (DAILY_TTL_S old)."""

    def __init__(self, ttl_s: float = DAILY_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._budgets: tuple[float, dict[str, float]] = (-math.inf, {})
        self._spent: dict[str, tuple[float, float, float]] = {}  # at, spent, day left

    def refusals(self, repo: Store, tenants: set[str]) -> dict[str, BudgetExceeded]:
        """The tenants among `tenants` past their daily budget, each with its 429."""
        now = time.monotonic()
        with self._lock:
            read_at, budgets = self._budgets
        if now - read_at >= self.ttl_s:
            budgets = repo.budgets.daily_budgets()
            with self._lock:
                self._budgets = (now, budgets)
        refused = {}
        for tenant in sorted(tenants & budgets.keys()):
            spent, day_left = self._spent_today(repo, tenant, now)
            if spent >= budgets[tenant]:
                error = BudgetExceeded(
                    f"tenant {tenant!r} spent {spent:.6g} USD today, its daily budget is "
                    f"{budgets[tenant]:.6g} USD: new runs are refused until the UTC day ends",
                    {"daily_cost_usd": budgets[tenant], "spent_today_usd": spent})
                error.retry_after = math.ceil(day_left)
                refused[tenant] = error
        return refused

    def _spent_today(self, repo: Store, tenant: str, now: float) -> tuple[float, float]:
        with self._lock:
            at, spent, day_left = self._spent.get(tenant, (-math.inf, 0.0, 0.0))
        if now - at >= self.ttl_s:
            spent, day_left = repo.budgets.spent_today(tenant)
            at = now
            with self._lock:
                self._spent[tenant] = (at, spent, day_left)
        return spent, max(1.0, day_left - (now - at))


_per_cache: weakref.WeakKeyDictionary[Any, DailyBudgets] = weakref.WeakKeyDictionary()
_per_cache_lock = threading.Lock()


def daily_refusals(repo: Store, tenants: set[str], cache: Any = None) -> dict[str, BudgetExceeded]:
    """The tenants past their daily budget; with an API's spec cache, read through a
    DailyBudgets kept beside it (else read now: the CLI, tests)."""
    if cache is None:
        return DailyBudgets(ttl_s=0).refusals(repo, tenants)
    with _per_cache_lock:
        daily = _per_cache.get(cache)
        if daily is None:
            daily = _per_cache[cache] = DailyBudgets()
    # As fresh as the cache's other reads (the quotas' tenants): its ttl_s when it has one.
    daily.ttl_s = getattr(cache, "ttl_s", DAILY_TTL_S)
    return daily.refusals(repo, tenants)
