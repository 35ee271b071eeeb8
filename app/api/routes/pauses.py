"""/v1/pauses: pause and resume a queue, a workflow, a run or a tenant (issue 32, item 3;
docs/flow-control.md). An admin key pauses anything and sees every pause; another key
pauses, resumes and sees only its own tenant's runs' pauses (another tenant's run or
pause is a 404; any other kind is a 403)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dagq.api.auth import principal, tenant_scope
from dagq.api.bodies import path_uuid, read_model, read_query
from dagq.api.schemas_pauses import CreatePauseBody, PauseList, PausesQuery
from dagq.service import pauses


async def create_pause(request: Request) -> JSONResponse:
    key = await principal(request)
    body = await read_model(request, CreatePauseBody)
    made, created = await run_in_threadpool(
        lambda: pauses.pause(request.app.state.repo, key, kind=body.kind, name=body.name,
                             reason=body.reason, refuse_submits=body.refuse_submits))
    # 200 with the pause already there: pausing twice changes nothing
    return JSONResponse(made.model_dump(mode="json"), status_code=201 if created else 200)


async def list_pauses(request: Request) -> JSONResponse:
    key = await principal(request)
    query = read_query(request, PausesQuery)
    found = await run_in_threadpool(
        lambda: request.app.state.repo.pauses.list_pauses(
            tenant_scope(key), history=query.history, limit=query.limit))
    return JSONResponse(PauseList(pauses=found).model_dump(mode="json"))


async def delete_pause(request: Request) -> JSONResponse:
    key = await principal(request)
    pause_id = path_uuid(request, "pause_id", "pause")
    ended = await run_in_threadpool(
        lambda: pauses.resume(request.app.state.repo, key, pause_id=pause_id))
    return JSONResponse(ended.model_dump(mode="json"))


routes = [
    Route("/v1/pauses", create_pause, methods=["POST"]),
    Route("/v1/pauses", list_pauses, methods=["GET"]),
    Route("/v1/pauses/{pause_id}", delete_pause, methods=["DELETE"]),
]
