"""/v1/tenants/{name}/costs: a tenant's price table, daily budget and spend today (admin
keys only; docs/cost.md)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dagq.api.auth import admin
from dagq.api.bodies import read_model
from dagq.api.routes.tenants import _name
from dagq.api.schemas_cost import PutTenantCostsBody, TenantCosts
from dagq.service import costs


async def get_costs(request: Request) -> JSONResponse:
    await admin(request)
    row = await run_in_threadpool(costs.tenant_costs, request.app.state.repo, _name(request))
    return JSONResponse(TenantCosts(**row).model_dump(mode="json"))


async def put_costs(request: Request) -> JSONResponse:
    await admin(request)
    name = _name(request)
    body = await read_model(request, PutTenantCostsBody)
    given = body.model_fields_set
    changes = {}
    if "prices" in given:
        changes["prices"] = {model: price.model_dump(exclude_none=True)
                             for model, price in (body.prices or {}).items()}
    if "daily_cost_usd" in given:
        changes["daily_cost_usd"] = body.daily_cost_usd
    row = await run_in_threadpool(
        lambda: costs.set_tenant_costs(request.app.state.repo, name, **changes))
    return JSONResponse(TenantCosts(**row).model_dump(mode="json"))


routes = [
    Route("/v1/tenants/{name}/costs", get_costs, methods=["GET"]),
    Route("/v1/tenants/{name}/costs", put_costs, methods=["PUT"]),
]
