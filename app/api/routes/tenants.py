"""/v1/tenants/{name}: a tenant's weight and quotas (admin keys only)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dagq import service
from dagq.api.auth import admin
from dagq.api.bodies import read_model
from dagq.api.schemas import PutTenantBody
from dagq.errors import InvalidRequest

MAX_NAME = 200


def _name(request: Request) -> str:
    name = request.path_params["name"]
    try:
        name.encode()  # a lone surrogate (from undecodable %-escapes) is no name
    except UnicodeEncodeError:
        name = ""
    if not 0 < len(name) <= MAX_NAME or "\x00" in name:
        raise InvalidRequest(f"a tenant name needs 1 to {MAX_NAME} characters (no NUL)")
    return name


async def get_tenant(request: Request) -> JSONResponse:
    await admin(request)
    record = await run_in_threadpool(request.app.state.repo.tenants.get_tenant, _name(request))
    return JSONResponse(record.model_dump(mode="json", exclude_none=False))


async def put_tenant(request: Request) -> JSONResponse:
    await admin(request)
    name = _name(request)
    body = await read_model(request, PutTenantBody)
    record = await run_in_threadpool(
        lambda: service.set_tenant(request.app.state.repo, name, **body.model_dump()))
    return JSONResponse(record.model_dump(mode="json"))


routes = [
    Route("/v1/tenants/{name}", get_tenant, methods=["GET"]),
    Route("/v1/tenants/{name}", put_tenant, methods=["PUT"]),
]
