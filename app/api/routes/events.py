"""GET /v1/runs/{run_id}/events: the run's feed, its event log and its nodes' streamed
chunks (`node_stream`), as SSE (live, resumable with Last-Event-ID, closed after the
run's terminal event) or, with ?format=json, a list. GET .../nodes/{key}/stream: one
attempt's streamed output so far.

The SSE id is a cursor `E.C`: the last event id and the last chunk id sent. Events and
chunks each keep their order (their ids follow commit order within a run) and are
interleaved by time; a resumed stream sends each of both exactly once."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dagq.api.auth import principal, tenant_scope
from dagq.api.bodies import read_query
from dagq.api.hub import EventHub
from dagq.api.routes.runs import run_id_of
from dagq.api.schemas import LAST_EVENT_ID_PATTERN, EventsQuery, NodeStream, NodeStreamQuery
from dagq.errors import InvalidRequest
from dagq.models import RunEvent
from dagq.states import OPEN_RUN_STATUSES, TERMINAL_RUN_EVENTS
from dagq.store import Store
from dagq.store.streams import FeedCursor, FeedItem

PAGE = 500
POLL_S = 5.0  # re-read even without a notification (lost NOTIFY, LISTEN reconnecting)
PING_S = 15
SHUTDOWN_GRACE_S = 2.0


def last_event_id(request: Request, query: EventsQuery) -> FeedCursor:
    """Resume after Last-Event-ID (an empty one counts as absent), else after ?after=."""
    header = request.headers.get("last-event-id")
    if not header:
        return FeedCursor.parse(query.after)
    if not re.fullmatch(LAST_EVENT_ID_PATTERN, header):
        raise InvalidRequest("Last-Event-ID must be an event id or an SSE id `E.C` (up to "
                             "18 digits each)",
                             [{"loc": ["header", "Last-Event-ID"], "msg": "not an event id",
                               "type": "value_error"}])
    return FeedCursor.parse(header)


def item_json(item: FeedItem) -> dict[str, Any]:
    """An event as its RunEvent; a chunk as {node_key, attempt, seq, text?, data?}."""
    row = item.row
    if item.kind == "event":
        return RunEvent.model_validate(row).model_dump(mode="json")
    chunk = {"node_key": row["node_key"], "attempt": row["attempt"], "seq": row["seq"]}
    if row["text"] is not None:
        chunk["text"] = row["text"]
    if row["data"] is not None:
        chunk["data"] = row["data"]
    return chunk


def item_sse(item: FeedItem) -> ServerSentEvent:
    event = item.row["type"] if item.kind == "event" else "node_stream"
    return ServerSentEvent(data=json.dumps(item_json(item), separators=(",", ":")),
                           event=event, id=str(item.cursor))


def item_listed(item: FeedItem, run_id: uuid.UUID) -> dict[str, Any]:
    """An item of the ?format=json list: as on the SSE stream, plus `cursor` (and, for a
    chunk, `type` and `run_id`)."""
    body = item_json(item)
    if item.kind == "chunk":
        body = {"type": "node_stream", "run_id": str(run_id), **body,
                "created_at": item.row["created_at"].isoformat()}
    return {**body, "cursor": str(item.cursor)}


async def run_events(request: Request) -> Response:
    key = await principal(request)
    run_id = run_id_of(request)
    query = read_query(request, EventsQuery)
    after = last_event_id(request, query)
    repo: Store = request.app.state.repo
    tenant = tenant_scope(key)
    run = await run_in_threadpool(repo.runs.get_run, run_id, tenant, with_nodes=False)  # 404
    if query.format == "json":
        feed = await run_in_threadpool(repo.streams.run_feed, run_id, after, limit=query.limit,
                                       chunks=query.stream, since=run.created_at)
        return JSONResponse([item_listed(i, run_id) for i in feed.items[:query.limit]])
    shutdown = anyio.Event()
    stream = follow(repo, request.app.state.hub, run_id, tenant, after, shutdown,
                    chunks=query.stream, since=run.created_at)
    return EventSourceResponse(stream, ping=PING_S, shutdown_event=shutdown,
                               shutdown_grace_period=SHUTDOWN_GRACE_S)


async def follow(
    repo: Store, hub: EventHub, run_id: uuid.UUID, tenant: str | None, after: FeedCursor,
    shutdown: anyio.Event, *, chunks: bool = True, since: datetime | None = None,
) -> AsyncIterator[ServerSentEvent]:
    """Every event (and chunk) after `after`, once; ends after the terminal event.

    Each read is one statement: the run's status and its events in one snapshot, so a
    terminal status comes with its terminal event (written in the same transaction).
    Late node events of a finished run (a running node stopping) are not waited for.
    `since`: the run's created_at (each poll then skips the event partitions before it)."""
    last = after
    with hub.subscribe(run_id) as wake:
        while not shutdown.is_set():
            wake.clear()
            feed = await run_in_threadpool(repo.streams.run_feed, run_id, last, limit=PAGE,
                                           chunks=chunks, since=since)
            if feed.run_status is None:
                return  # pruned while we watched
            finished = feed.run_status not in OPEN_RUN_STATUSES
            for item in feed.items:
                yield item_sse(item)
                last = item.cursor
            if feed.cut:
                continue
            run_level = [i.row["type"] for i in feed.items
                         if i.kind == "event" and i.row["node_key"] is None]
            if (run_level[-1] in TERMINAL_RUN_EVENTS) if run_level else finished:
                return  # (a retry's run_queued after the terminal event keeps it open)
            await _wait_any(wake, shutdown, hub.poll_s)


async def _wait_any(wake: asyncio.Event, shutdown: anyio.Event, timeout: float) -> None:
    with anyio.move_on_after(timeout):
        async with anyio.create_task_group() as group:
            async def until(event: asyncio.Event | anyio.Event) -> None:
                await event.wait()
                group.cancel_scope.cancel()

            group.start_soon(until, wake)
            group.start_soon(until, shutdown)


async def node_stream(request: Request) -> Response:
    key = await principal(request)
    run_id = run_id_of(request)
    node_key = request.path_params["node_key"]
    query = read_query(request, NodeStreamQuery)
    repo: Store = request.app.state.repo
    found = await run_in_threadpool(repo.streams.node_stream, run_id, node_key[:200], query.attempt,
                                    tenant_scope(key))
    return JSONResponse(NodeStream.model_validate(found).model_dump(mode="json"))


routes = [Route("/v1/runs/{run_id}/events", run_events, methods=["GET"]),
          Route("/v1/runs/{run_id}/nodes/{node_key}/stream", node_stream, methods=["GET"])]
