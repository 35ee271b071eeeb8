"""Waits for a person (docs/forms.md): open signal waits with their forms
(/v1/runs/{id}/waits, /v1/waits), and respond links (/v1/respond/{token} with no API key;
the dashboard's page /respond/{token}).

Listing needs a key and mints one fresh respond link per wait listed (why: the module
docstring of dagq.service.waits); a key sees its own tenant's waits, an admin key every
tenant's (or ?tenant=). A respond link is its own authority: whoever holds the token may
read the form and answer the wait once, and nothing else (no run, no other wait)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from dagq.api.auth import principal, tenant_scope
from dagq.api.bodies import read_model, read_query
from dagq.api.routes.pages import DASHBOARD_DIR
from dagq.api.routes.runs import run_id_of
from dagq.api.schemas_waits import (
    RespondBody,
    Responded,
    RespondForm,
    RunWaitsQuery,
    WaitList,
    WaitsQuery,
)
from dagq.errors import NotFound
from dagq.models import ApiKey
from dagq.service import waits as service


def issued_to(key: ApiKey, links: bool) -> str | None:
    """Who a listing's links are issued to (kept with each link), or None: no links."""
    return f"key {key.id}" if links else None


def _waits(found: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse(WaitList.model_validate({"waits": found}).model_dump(mode="json"))


async def run_waits(request: Request) -> JSONResponse:
    """200: the run's open signal waits and its child runs', each with a fresh link."""
    key = await principal(request)
    run_id = run_id_of(request)
    query = read_query(request, RunWaitsQuery)
    found = await run_in_threadpool(lambda: service.run_waits(
        request.app.state.repo, run_id, tenant_scope(key),
        issued_to=issued_to(key, query.links)))
    return _waits(found)


async def list_waits(request: Request) -> JSONResponse:
    """200: open signal waits, oldest first (a key's own tenant's; an admin's any)."""
    key = await principal(request)
    query = read_query(request, WaitsQuery)
    tenant = tenant_scope(key) if tenant_scope(key) is not None else query.tenant
    found = await run_in_threadpool(lambda: service.open_waits(
        request.app.state.repo, tenant=tenant, assignee=query.assignee, limit=query.limit,
        issued_to=issued_to(key, query.links)))
    return _waits(found)


async def respond_form(request: Request) -> JSONResponse:
    """200: the form of the wait a respond link answers (no API key: the token is it)."""
    form = await run_in_threadpool(service.link_form, request.app.state.repo,
                                   request.path_params["token"])
    return JSONResponse(RespondForm.model_validate(form).model_dump(mode="json"))


async def respond(request: Request) -> JSONResponse:
    """200: the wait was answered; 410 once the link was used, expired or its wait ended;
    422 naming the field when the data does not fit the form (nothing written)."""
    token = request.path_params["token"]
    body = await read_model(request, RespondBody) if (await request.body()).strip() \
        else RespondBody()
    result = await run_in_threadpool(service.respond, request.app.state.repo, token,
                                     body.data)
    return JSONResponse(Responded(run_id=result.run_id, node_key=result.node_key or "",
                                  signal=result.signal, signal_id=result.signal_id)
                        .model_dump(mode="json"))


async def respond_page(request: Request) -> Response:
    """The dashboard's page for a respond link: it reads the form with the token in its
    own address and submits it (app/dashboard/respond.html, static/respond.js)."""
    page = DASHBOARD_DIR / "respond.html"
    if not page.is_file():
        raise NotFound("the dashboard is not installed")
    return FileResponse(page, media_type="text/html")


routes = [
    Route("/v1/runs/{run_id}/waits", run_waits, methods=["GET"]),
    Route("/v1/waits", list_waits, methods=["GET"]),
    Route("/v1/respond/{token}", respond_form, methods=["GET"]),
    Route("/v1/respond/{token}", respond, methods=["POST"]),
    Route("/respond/{token}", respond_page, methods=["GET"]),
]
