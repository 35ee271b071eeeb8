"""/v1/events: emit an event that starts the workflows subscribed to it, read one back
(issue 33 item 2; what it does: dagq.service.triggers). A key emits for its own tenant;
another tenant's event is a 404 (an admin key reads any tenant's by id)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dagq.api.auth import principal, tenant_scope
from dagq.api.bodies import read_model
from dagq.api.schemas_events import EmitEventBody, EventAnswer
from dagq.errors import NotFound
from dagq.service import triggers
from dagq.service.triggers import MAX_EVENT_ID


async def emit_event(request: Request) -> JSONResponse:
    key = await principal(request)
    body = await read_model(request, EmitEventBody)
    repo = request.app.state.repo
    event = await run_in_threadpool(
        lambda: triggers.emit(repo, tenant=key.tenant, name=body.name, payload=body.payload,
                              event_id=body.event_id, metadata=body.metadata))
    answer = EventAnswer(**event.model_dump())
    return JSONResponse(answer.model_dump(mode="json"),
                        status_code=201 if event.created else 200)


async def get_event(request: Request) -> JSONResponse:
    key = await principal(request)
    wanted = request.path_params["event_id"]
    if len(wanted) > MAX_EVENT_ID or "\x00" in wanted:  # no such id; Postgres refuses NUL
        raise NotFound(f"event {wanted[:100]!r} not found")
    event = await run_in_threadpool(triggers.get_event, request.app.state.repo, wanted,
                                    tenant_scope(key))
    return JSONResponse(EventAnswer(**event.model_dump()).model_dump(mode="json"))


routes = [
    Route("/v1/events", emit_event, methods=["POST"]),
    Route("/v1/events/{event_id}", get_event, methods=["GET"]),
]
