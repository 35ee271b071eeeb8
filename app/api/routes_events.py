"""GET /v1/runs/{run_id}/events: the run's event log as SSE (live, resumable with
Last-Event-ID, closed after the run's terminal event) or, with ?format=json, a list."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dagq.api.auth import principal, tenant_scope
from dagq.api.bodies import read_query
from dagq.api.hub import EventHub
from dagq.api.routes_runs import run_id_of
from dagq.api.schemas import LAST_EVENT_ID_PATTERN, EventsQuery
from dagq.errors import InvalidRequest, NotFound
from dagq.models import RunEvent
from dagq.states import OPEN_RUN_STATUSES, TERMINAL_RUN_EVENTS
from dagq.store import Store

PAGE = 500
POLL_S = 5.0  # re-read even without a notification (lost NOTIFY, LISTEN reconnecting)
PING_S = 15
SHUTDOWN_GRACE_S = 2.0


def last_event_id(request: Request, query: EventsQuery) -> int:
    """Resume after Last-Event-ID (an empty one counts as absent), else after ?after=."""
    header = request.headers.get("last-event-id")
    if not header:
        return query.after
    if not re.fullmatch(LAST_EVENT_ID_PATTERN, header):
        raise InvalidRequest("Last-Event-ID must be an event id (up to 18 digits)",
                             [{"loc": ["header", "Last-Event-ID"], "msg": "not an event id",
                               "type": "value_error"}])
    return int(header)


def event_json(event: RunEvent) -> str:
    return json.dumps(event.model_dump(mode="json"), separators=(",", ":"))


async def run_events(request: Request) -> Response:
    key = await principal(request)
    run_id = run_id_of(request)
    query = read_query(request, EventsQuery)
    after = last_event_id(request, query)
    repo: Store = request.app.state.repo
    tenant = tenant_scope(key)
    await run_in_threadpool(repo.get_run, run_id, tenant, with_nodes=False)  # 404 first
    if query.format == "json":
        events = await run_in_threadpool(repo.events, run_id, after=after, limit=query.limit)
        return JSONResponse([e.model_dump(mode="json") for e in events])
    shutdown = anyio.Event()
    stream = follow(repo, request.app.state.hub, run_id, tenant, after, shutdown)
    return EventSourceResponse(stream, ping=PING_S, shutdown_event=shutdown,
                               shutdown_grace_period=SHUTDOWN_GRACE_S)


async def follow(
    repo: Store, hub: EventHub, run_id: uuid.UUID, tenant: str | None, after: int,
    shutdown: anyio.Event,
) -> AsyncIterator[ServerSentEvent]:
    """Every event after `after`, in id order, once; ends after the terminal event.

    The run's status is read before its events: when it is terminal, the events read
    next include its terminal event (written in the same transaction as the status).
    Late node events of a finished run (a running node stopping) are not waited for."""
    last = after
    with hub.subscribe(run_id) as wake:
        while not shutdown.is_set():
            wake.clear()
            try:
                run = await run_in_threadpool(repo.get_run, run_id, tenant, with_nodes=False)
            except NotFound:
                return  # pruned while we watched
            finished = run.status not in OPEN_RUN_STATUSES
            batch = await run_in_threadpool(repo.events, run_id, after=last, limit=PAGE)
            for event in batch:
                yield ServerSentEvent(data=event_json(event), event=event.type,
                                      id=str(event.id))
                last = event.id
            if len(batch) == PAGE:
                continue
            run_level = [e.type for e in batch if e.node_key is None]
            if (run_level[-1] in TERMINAL_RUN_EVENTS) if run_level else finished:
                return  # (a retry's run_queued after the terminal event keeps it open)
            await _wait_any(wake, shutdown, POLL_S)


async def _wait_any(wake: asyncio.Event, shutdown: anyio.Event, timeout: float) -> None:
    with anyio.move_on_after(timeout):
        async with anyio.create_task_group() as group:
            async def until(event: asyncio.Event | anyio.Event) -> None:
                await event.wait()
                group.cancel_scope.cancel()

            group.start_soon(until, wake)
            group.start_soon(until, shutdown)


routes = [Route("/v1/runs/{run_id}/events", run_events, methods=["GET"])]
