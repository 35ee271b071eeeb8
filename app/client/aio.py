"""dagq.AsyncClient: the same operations as dagq.Client for asyncio (or trio) programs.
Requests, replies, errors and retries come from `_calls`, `_http` and `events`; this
module only does the I/O, and wait() enforces its deadline by cancellation."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import datetime
from typing import Any, TypeVar

import anyio
import httpx
from tenacity import AsyncRetrying

from dagq.api.schemas import QueueStats, RunAction, RunList, RunSummary, WorkflowRef
from dagq.client import _calls as calls
from dagq.client._http import (
    DEFAULT_TIMEOUT_S,
    Config,
    RetryPolicy,
    error_from_response,
    poll_delays,
    retrying_options,
    transport_error,
    unexpected_reply,
)
from dagq.client._pause_calls import AsyncPauseMethods
from dagq.client.events import Event, EventCursor, stream_ended_early
from dagq.client.text import TextFollower, TextPiece, runs_again
from dagq.client.triggers import AsyncEventCalls
from dagq.client.waits import AsyncWaitCalls
from dagq.client.webhooks import AsyncWebhookMethods
from dagq.errors import Unavailable, UnexpectedReply
from dagq.models import (
    ApiKeyRecord,
    BulkOutcome,
    RerunResult,
    ResolveResult,
    RunEvent,
    RunView,
    ScheduleRecord,
    SignalResult,
    SubmitResult,
    WorkflowRecord,
)
from dagq.states import OPEN_RUN_STATUSES

T = TypeVar("T")
RunId = uuid.UUID | str


class AsyncClient(AsyncWaitCalls, AsyncEventCalls, AsyncWebhookMethods, AsyncPauseMethods):
    """As `dagq.Client`, with coroutines and async iterators:
    `async with AsyncClient() as dagq: run = await dagq.wait((await dagq.submit(...)).run_id)`.
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT_S, retry_policy: RetryPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._config = Config.resolve(url, api_key, timeout, retry_policy)
        self._http = httpx.AsyncClient(**self._config.http_options(transport))

    @property
    def url(self) -> str:
        return self._config.url

    async def aclose(self) -> None:
        await self._http.aclose()

    close = aclose

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ----- workflows --------------------------------------------------------------------

    async def register_workflow(self, spec: calls.Spec | str | os.PathLike[str],
                                ) -> tuple[WorkflowRef, bool]:
        return await self._call(calls.register_workflow(spec))

    async def workflows(self) -> list[WorkflowRecord]:
        return await self._call(calls.workflows())

    async def workflow(self, name: str, version: int | None = None) -> WorkflowRecord:
        return await self._call(calls.workflow(name, version))

    # ----- runs -------------------------------------------------------------------------

    async def submit(self, workflow: str | calls.Spec, inputs: Any = None,
                     event_key: str | None = None, priority: int | None = None,
                     deadline_s: float | None = None, *, version: int | None = None,
                     concurrency: dict[str, Any] | None = None,
                     metadata: dict[str, Any] | None = None,
                     callback: dict[str, Any] | None = None,
                     traceparent: str | None = None,
                     budget: dict[str, Any] | None = None) -> SubmitResult:
        return await self._call(calls.submit(workflow, inputs, event_key, priority,
                                             deadline_s, version, concurrency, metadata,
                                             callback, traceparent, budget))

    async def run(self, run_id: RunId) -> RunView:
        return await self._call(calls.run(run_id))

    async def runs(self, status: str | None = None, workflow: str | None = None, *,
                   tenant: str | None = None, page_size: int = 100,
                   parent: uuid.UUID | str | None = None,
                   metadata: dict[str, Any] | None = None,
                   created_after: datetime | str | None = None,
                   created_before: datetime | str | None = None) -> AsyncIterator[RunSummary]:
        cursor = None
        while True:
            page = await self.list_runs(
                status, workflow, tenant=tenant, limit=page_size, cursor=cursor,
                parent=parent, metadata=metadata, created_after=created_after,
                created_before=created_before)
            for summary in page.runs:
                yield summary
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def list_runs(self, status: str | None = None, workflow: str | None = None, *,
                        metadata: dict[str, Any] | None = None,
                        created_after: datetime | str | None = None,
                        created_before: datetime | str | None = None,
                        tenant: str | None = None, parent: uuid.UUID | str | None = None,
                        limit: int = 50, cursor: str | None = None) -> RunList:
        """As Client.list_runs."""
        return await self._call(calls.runs_page(status, workflow, tenant, limit, cursor,
                                                parent, metadata, created_after,
                                                created_before))

    async def bulk(self, action: str, *, ids: list[RunId] | None = None,
                   status: str | None = None, workflow: str | None = None,
                   metadata: dict[str, Any] | None = None,
                   created_after: datetime | str | None = None,
                   created_before: datetime | str | None = None, limit: int = 100,
                   cursor: str | None = None, from_: list[str] | None = None) -> BulkOutcome:
        """As Client.bulk."""
        run_filter = None if ids is not None else calls.bulk_filter(
            status, workflow, metadata, created_after, created_before)
        return await self._call(calls.bulk(action, ids=ids, run_filter=run_filter,
                                           limit=limit, cursor=cursor, from_=from_))

    async def runs_by_prefix(self, prefix: str, limit: int = 11) -> list[RunSummary]:
        """The runs (at most `limit`, by id) whose id starts with `prefix`: at least 4
        hex digits, dashes optional (GET /v1/runs?id_prefix=)."""
        return await self._call(calls.runs_by_prefix(prefix, limit))

    async def cancel(self, run_id: RunId) -> RunAction:
        return await self._call(calls.cancel(run_id))

    async def retry(self, run_id: RunId, items: str = "all") -> RunAction:
        """As Client.retry."""
        return await self._call(calls.retry(run_id, items))

    async def resolve(self, run_id: RunId, node_key: str, outputs: Any) -> ResolveResult:
        """As Client.resolve."""
        return await self._call(calls.resolve(run_id, node_key, outputs))

    async def rerun(self, run_id: RunId, from_: list[str],
                    outputs: dict[str, Any] | None = None, inputs: Any = None) -> RerunResult:
        """As Client.rerun."""
        return await self._call(calls.rerun(run_id, from_, outputs, inputs))

    async def signal(self, run_id: RunId, name: str, data: dict[str, Any] | None = None, *,
                     signal_id: str | None = None) -> SignalResult:
        """As Client.signal."""
        return await self._call(calls.signal(run_id, name, data, signal_id))

    def events(self, run_id: RunId, after: int | str | None = None, *,
               follow: bool = True) -> AsyncIterator[Event]:
        """As Client.events. Close it if you stop early: `async with aclosing(...)`."""
        if follow:
            return self._follow(run_id, after)
        return self._pages(run_id, calls.event_id(after))

    async def stream_text(self, run_id: RunId, node_key: str) -> AsyncIterator[TextPiece]:
        """As Client.stream_text."""
        follower = TextFollower(node_key)
        async with aclosing(self._follow(run_id, None)) as events:
            async for event in events:
                piece = follower.feed(event)
                if piece is not None:
                    yield piece
                if follower.ended:
                    later = await self._call(calls.events_page(run_id, event.id,
                                                               calls.EVENTS_PAGE))
                    if not runs_again(node_key, later):
                        return
                    follower.resume()

    async def wait(self, run_id: RunId, timeout_s: float | None = None) -> RunView:
        try:
            with anyio.fail_after(timeout_s):
                return await self._wait(run_id)
        except TimeoutError:
            raise TimeoutError(f"run {run_id} did not finish within {timeout_s}s") from None

    # ----- schedules and queues ---------------------------------------------------------

    async def create_schedule(self, workflow: str | calls.Spec, cron: str, inputs: Any = None,
                              *, timezone: str | None = None, version: int | None = None,
                              ) -> uuid.UUID:
        return await self._call(calls.create_schedule(workflow, cron, inputs, timezone,
                                                      version))

    async def schedule(self, schedule_id: RunId) -> ScheduleRecord:
        return await self._call(calls.schedule(schedule_id))

    async def schedules(self) -> list[ScheduleRecord]:
        return await self._call(calls.schedules())

    async def delete_schedule(self, schedule_id: RunId) -> None:
        await self._call(calls.delete_schedule(schedule_id))

    # ----- API keys ---------------------------------------------------------------------

    async def api_keys(self, tenant: str | None = None) -> list[ApiKeyRecord]:
        """API keys, revoked ones too (never a key or its hash): an admin key sees every
        tenant's (or `tenant`'s), another key its own tenant's."""
        return await self._call(calls.api_keys(tenant))

    async def revoke_key(self, key_id: RunId) -> ApiKeyRecord:
        """Revoke an API key for good (admin keys only); again changes nothing."""
        return await self._call(calls.revoke_key(key_id))


    async def queues(self) -> list[QueueStats]:
        return await self._call(calls.queues())

    # ----- I/O --------------------------------------------------------------------------

    async def _call(self, call: calls.Call[T]) -> T:
        retrying = AsyncRetrying(sleep=anyio.sleep,
                                 **retrying_options(self._config.retry, call.idempotent))
        response = await retrying(self._send, call)
        try:
            return call.parse(response)
        except (ValueError, KeyError, TypeError) as exc:
            raise unexpected_reply(response, str(exc)[:300]) from None

    async def _send(self, call: calls.Call[Any]) -> httpx.Response:
        try:
            response = await self._http.request(call.method, call.path, params=call.params,
                                                headers=call.headers,
                                                json=call.body)
        except httpx.TransportError as exc:
            raise transport_error(exc, self.url) from exc
        if response.is_error:
            raise error_from_response(response)
        return response

    async def _pages(self, run_id: RunId, after: int) -> AsyncIterator[RunEvent]:
        while True:
            page = await self._call(calls.events_page(run_id, after, calls.EVENTS_PAGE))
            for event in page:
                yield event
            if len(page) < calls.EVENTS_PAGE:
                return
            after = page[-1].id

    async def _wait(self, run_id: RunId) -> RunView:
        while True:
            run = await self.run(run_id)
            if run.status not in OPEN_RUN_STATUSES:
                return run
            try:
                async with aclosing(self._follow(run_id, None)) as events:
                    async for _ in events:
                        pass
            except (Unavailable, UnexpectedReply):
                return await self._poll(run_id)

    async def _follow(self, run_id: RunId, after: int | str | None) -> AsyncIterator[Event]:
        cursor = EventCursor(after, self._config.retry)
        while True:
            try:
                async with aclosing(self._stream(run_id, cursor)) as stream:
                    async for event in stream:
                        yield event
                if cursor.finished or cursor.settled:
                    return  # settled: nothing more will come (`after` past the end)
                if not cursor.progressed and await self._finished(run_id):
                    cursor.settled = True
                    continue  # reopen at once: it replays whatever came after the cursor
                raise stream_ended_early(run_id)
            except Unavailable as error:
                if cursor.finished:
                    return
                await anyio.sleep(cursor.dropped(error))

    async def _finished(self, run_id: RunId) -> bool:
        return (await self.run(run_id)).status not in OPEN_RUN_STATUSES

    async def _stream(self, run_id: RunId, cursor: EventCursor) -> AsyncIterator[Event]:
        try:
            async with self._http.stream("GET", calls.events_path(run_id),
                                         headers=cursor.headers(),
                                         timeout=self._config.stream_timeout()) as response:
                if response.is_error:
                    await response.aread()
                    raise error_from_response(response)
                if not response.headers.get("content-type", "").startswith(
                        "text/event-stream"):
                    raise unexpected_reply(response, "not an event stream")
                cursor.connected()
                async for line in response.aiter_lines():
                    event = cursor.feed(line)
                    if event is not None:
                        yield event
        except httpx.TransportError as exc:
            raise transport_error(exc, self.url) from exc

    async def _poll(self, run_id: RunId) -> RunView:
        for delay in poll_delays():
            run = await self.run(run_id)
            if run.status not in OPEN_RUN_STATUSES:
                return run
            await anyio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover
