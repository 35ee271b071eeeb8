"""dagq.Client: the HTTP API from Python, blocking (httpx). Requests, replies, errors and
retries are built in `_calls`, `_http` and `events`; this module only does the I/O."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Generator, Iterator
from datetime import datetime
from typing import Any, TypeVar

import httpx
from tenacity import Retrying

from dagq.api.schemas import QueueStats, RunAction, RunList, RunSummary, WorkflowRef
from dagq.client import _calls as calls
from dagq.client._http import (
    DEFAULT_TIMEOUT_S,
    Config,
    RetryPolicy,
    check_deadline,
    error_from_response,
    poll_delays,
    read_timeout_s,
    remaining_s,
    retrying_options,
    stream_outlives_deadline,
    transport_error,
    unexpected_reply,
)
from dagq.client._pause_calls import PauseMethods
from dagq.client.events import Event, EventCursor, stream_ended_early
from dagq.client.text import TextFollower, TextPiece, runs_again
from dagq.client.triggers import EventCalls
from dagq.client.waits import WaitCalls
from dagq.client.webhooks import WebhookMethods
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
_REOPEN = object()  # a wait() stream closed to reopen it with a shorter read timeout


class Client(WaitCalls, EventCalls, WebhookMethods, PauseMethods):
    """A dagq API client. `url` and `api_key` default to $DAGQ_URL and $DAGQ_API_KEY.

    Use it as a context manager, or call `close()`. Errors are `dagq.errors.ApiError`
    subclasses; see docs/client.md for the retry rules."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT_S, retry_policy: RetryPolicy | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._config = Config.resolve(url, api_key, timeout, retry_policy)
        self._http = httpx.Client(**self._config.http_options(transport))

    @property
    def url(self) -> str:
        return self._config.url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- workflows --------------------------------------------------------------------

    def register_workflow(self, spec: calls.Spec | str | os.PathLike[str],
                          ) -> tuple[WorkflowRef, bool]:
        """Register a spec (a dict, a `dagq.Workflow`, or a .json/.yaml path); admin keys
        only. Returns `(ref, created)`: `created` is False when an identical spec was
        registered."""
        return self._call(calls.register_workflow(spec))

    def workflows(self) -> list[WorkflowRecord]:
        return self._call(calls.workflows())

    def workflow(self, name: str, version: int | None = None) -> WorkflowRecord:
        """A registered workflow: its latest version, or `version`."""
        return self._call(calls.workflow(name, version))

    # ----- runs -------------------------------------------------------------------------

    def submit(self, workflow: str | calls.Spec, inputs: Any = None,
               event_key: str | None = None, priority: int | None = None,
               deadline_s: float | None = None, *, version: int | None = None,
               concurrency: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None,
               callback: dict[str, Any] | None = None, traceparent: str | None = None,
               budget: dict[str, Any] | None = None) -> SubmitResult:
        """Submit a run of a registered workflow (by name) or of an inline spec (a dict
        or a `dagq.Workflow`). With an `event_key`, the same key again returns the same
        run (`created=False`). `concurrency` ({"key": "inputs.<path>", "limit",
        "on_limit"}) replaces the workflow's concurrency key for this run. `metadata`:
        your own ids to find the run by (`runs(metadata=...)`): at most 16 keys with
        string, number or boolean values. `callback` ({"url", "events"?, "secret"?}, see
        `dagq.client.webhooks.callback`): POST this run's events there, signed. W3C trace:
        `traceparent`, else the current span's. `budget` replaces the workflow's."""
        return self._call(calls.submit(workflow, inputs, event_key, priority, deadline_s, version,
                                       concurrency, metadata, callback, traceparent, budget))

    def run(self, run_id: RunId) -> RunView:
        """The run with its nodes."""
        return self._call(calls.run(run_id))

    def runs(self, status: str | None = None, workflow: str | None = None, *,
             tenant: str | None = None, page_size: int = 100,
             parent: uuid.UUID | str | None = None, metadata: dict[str, Any] | None = None,
             created_after: datetime | str | None = None,
             created_before: datetime | str | None = None) -> Iterator[RunSummary]:
        """Every matching run, newest first, fetching page after page as you iterate
        (filters as in `list_runs`)."""
        cursor = None
        while True:
            page = self.list_runs(status, workflow, tenant=tenant, limit=page_size,
                                  cursor=cursor, parent=parent, metadata=metadata,
                                  created_after=created_after, created_before=created_before)
            yield from page.runs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def list_runs(self, status: str | None = None, workflow: str | None = None, *,
                  metadata: dict[str, Any] | None = None,
                  created_after: datetime | str | None = None,
                  created_before: datetime | str | None = None, tenant: str | None = None,
                  parent: uuid.UUID | str | None = None, limit: int = 50,
                  cursor: str | None = None) -> RunList:
        """One page of runs, newest first (GET /v1/runs); its `next_cursor` gives the next.
        `metadata`: runs whose metadata holds each key with that value (5 matches 5 and
        "5"); `created_after` (inclusive) / `created_before` (exclusive): datetimes or
        ISO 8601 text, UTC without an offset; `parent`: only that run's child runs."""
        return self._call(calls.runs_page(status, workflow, tenant, limit, cursor, parent,
                                          metadata, created_after, created_before))

    def bulk(self, action: str, *, ids: list[RunId] | None = None, status: str | None = None,
             workflow: str | None = None, metadata: dict[str, Any] | None = None,
             created_after: datetime | str | None = None,
             created_before: datetime | str | None = None, limit: int = 100,
             cursor: str | None = None, from_: list[str] | None = None) -> BulkOutcome:
        """One call of POST /v1/runs/bulk/{action} (cancel, retry or rerun): on `ids`, or
        on at most `limit` runs the filters find after `cursor`; call again with its
        `next_cursor` until it is None. A run the action does not apply to is skipped.
        `from_` (rerun): the nodes to run again (default: each run's failed ones)."""
        run_filter = None if ids is not None else calls.bulk_filter(
            status, workflow, metadata, created_after, created_before)
        return self._call(calls.bulk(action, ids=ids, run_filter=run_filter, limit=limit,
                                     cursor=cursor, from_=from_))

    def runs_by_prefix(self, prefix: str, limit: int = 11) -> list[RunSummary]:
        """The runs (at most `limit`, by id) whose id starts with `prefix`: at least 4
        hex digits, dashes optional (GET /v1/runs?id_prefix=)."""
        return self._call(calls.runs_by_prefix(prefix, limit))

    def cancel(self, run_id: RunId) -> RunAction:
        return self._call(calls.cancel(run_id))

    def retry(self, run_id: RunId, items: str = "all") -> RunAction:
        """Requeue a failed, partial_succeeded or cancelled run's unfinished nodes.
        `items="failed"`: a map node keeps the items that succeeded (and their outputs)
        and runs only the others again; "all" runs every item again."""
        return self._call(calls.retry(run_id, items))

    def resolve(self, run_id: RunId, node_key: str, outputs: Any) -> ResolveResult:
        """Mark a failed or cancelled node succeeded with `outputs` (an object; a list
        for a map node) and let its run go on: its dependents run, a finished run
        reopens. Recorded as a `node_resolved` event naming this client's key."""
        return self._call(calls.resolve(run_id, node_key, outputs))

    def rerun(self, run_id: RunId, from_: list[str], outputs: dict[str, Any] | None = None,
              inputs: Any = None) -> RerunResult:
        """A new run of a finished run's workflow version: the nodes in `from_` and
        everything downstream of them run again, every other node is copied as it ended
        (its outputs, or the override in `outputs`); `inputs` replaces the run's inputs."""
        return self._call(calls.rerun(run_id, from_, outputs, inputs))

    def signal(self, run_id: RunId, name: str, data: dict[str, Any] | None = None, *,
               signal_id: str | None = None) -> SignalResult:
        """Send a signal to the run's oldest node waiting for `name` (buffered until one
        waits); the same `signal_id` again is a no-op (`duplicate`)."""
        return self._call(calls.signal(run_id, name, data, signal_id))

    def events(self, run_id: RunId, after: int | str | None = None, *,
               follow: bool = True) -> Iterator[Event]:
        """The run's events after event id `after`, each once, in order. Following (the
        default), it streams them live, reconnects after a dropped connection and ends
        after the run's terminal event; `follow=False` pages through those stored now."""
        if follow:
            return self._follow(run_id, after, None)
        return self._pages(run_id, calls.event_id(after))

    def stream_text(self, run_id: RunId, node_key: str) -> Iterator[TextPiece]:
        """The text node `node_key` streams, piece by piece as it arrives (from the
        start of the run's stream), until the node ends. A piece with `reset` true
        starts a new attempt: discard the text of the earlier one."""
        follower = TextFollower(node_key)
        for event in self._follow(run_id, None, None):
            piece = follower.feed(event)
            if piece is not None:
                yield piece
            if follower.ended:
                later = self._call(calls.events_page(run_id, event.id, calls.EVENTS_PAGE))
                if not runs_again(node_key, later):
                    return
                follower.resume()

    def wait(self, run_id: RunId, timeout_s: float | None = None) -> RunView:
        """Block until the run is finished and return it; `TimeoutError` after
        `timeout_s`. Follows the event stream, and polls if the stream is unusable."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while True:
                run = self.run(run_id)
                if run.status not in OPEN_RUN_STATUSES:
                    return run
                try:
                    for _ in self._follow(run_id, None, deadline):
                        pass
                except (Unavailable, UnexpectedReply):
                    return self._poll(run_id, deadline)
        except TimeoutError:
            raise TimeoutError(f"run {run_id} did not finish within {timeout_s}s") from None

    # ----- schedules and queues ---------------------------------------------------------

    def create_schedule(self, workflow: str | calls.Spec, cron: str, inputs: Any = None, *,
                        timezone: str | None = None, version: int | None = None) -> uuid.UUID:
        """A cron schedule (5 fields, in `timezone`, default UTC); returns its id."""
        return self._call(calls.create_schedule(workflow, cron, inputs, timezone, version))

    def schedule(self, schedule_id: RunId) -> ScheduleRecord:
        return self._call(calls.schedule(schedule_id))

    def schedules(self) -> list[ScheduleRecord]:
        return self._call(calls.schedules())

    def delete_schedule(self, schedule_id: RunId) -> None:
        self._call(calls.delete_schedule(schedule_id))

    # ----- API keys ---------------------------------------------------------------------

    def api_keys(self, tenant: str | None = None) -> list[ApiKeyRecord]:
        """API keys, revoked ones too (never a key or its hash): an admin key sees every
        tenant's (or `tenant`'s), another key its own tenant's."""
        return self._call(calls.api_keys(tenant))

    def revoke_key(self, key_id: RunId) -> ApiKeyRecord:
        """Revoke an API key for good (admin keys only); again changes nothing."""
        return self._call(calls.revoke_key(key_id))


    def queues(self) -> list[QueueStats]:
        return self._call(calls.queues())

    # ----- I/O --------------------------------------------------------------------------

    def _call(self, call: calls.Call[T]) -> T:
        retrying = Retrying(**retrying_options(self._config.retry, call.idempotent))
        response = retrying(self._send, call)
        try:
            return call.parse(response)
        except (ValueError, KeyError, TypeError) as exc:
            raise unexpected_reply(response, str(exc)[:300]) from None

    def _send(self, call: calls.Call[Any]) -> httpx.Response:
        try:
            response = self._http.request(call.method, call.path, params=call.params,
                                          json=call.body, headers=call.headers)
        except httpx.TransportError as exc:
            raise transport_error(exc, self.url) from exc
        if response.is_error:
            raise error_from_response(response)
        return response

    def _pages(self, run_id: RunId, after: int) -> Iterator[RunEvent]:
        while True:
            page = self._call(calls.events_page(run_id, after, calls.EVENTS_PAGE))
            yield from page
            if len(page) < calls.EVENTS_PAGE:
                return
            after = page[-1].id

    def _follow(self, run_id: RunId, after: int | str | None,
                deadline: float | None) -> Iterator[Event]:
        cursor = EventCursor(after, self._config.retry)
        while True:
            try:
                ended = yield from self._stream(run_id, cursor, deadline)
                if cursor.finished or (cursor.settled and ended is None):
                    return  # settled: nothing more will come (`after` past the end)
                if ended is _REOPEN:
                    continue
                if not cursor.progressed and self._finished(run_id):
                    cursor.settled = True
                    continue  # reopen at once: it replays whatever came after the cursor
                raise stream_ended_early(run_id)
            except Unavailable as error:
                if cursor.finished:
                    return
                self._sleep(cursor.dropped(error), deadline)

    def _finished(self, run_id: RunId) -> bool:
        return self.run(run_id).status not in OPEN_RUN_STATUSES

    def _stream(self, run_id: RunId, cursor: EventCursor,
                deadline: float | None) -> Generator[Event, None, object]:
        read_s = read_timeout_s(deadline)
        try:
            with self._http.stream("GET", calls.events_path(run_id), headers=cursor.headers(),
                                   timeout=self._config.stream_timeout(read_s)) as response:
                if response.is_error:
                    response.read()
                    raise error_from_response(response)
                if not response.headers.get("content-type", "").startswith(
                        "text/event-stream"):
                    raise unexpected_reply(response, "not an event stream")
                cursor.connected()
                for line in response.iter_lines():
                    event = cursor.feed(line)
                    if event is not None:
                        yield event
                    if stream_outlives_deadline(deadline, read_s):
                        return _REOPEN
        except httpx.TransportError as exc:
            check_deadline(deadline)
            raise transport_error(exc, self.url) from exc
        return None

    def _sleep(self, delay: float, deadline: float | None) -> None:
        left = remaining_s(deadline)
        time.sleep(delay if left is None else max(0.0, min(delay, left)))

    def _poll(self, run_id: RunId, deadline: float | None) -> RunView:
        for delay in poll_delays():
            run = self.run(run_id)
            if run.status not in OPEN_RUN_STATUSES:
                return run
            check_deadline(deadline)
            self._sleep(delay, deadline)
            check_deadline(deadline)
        raise AssertionError("unreachable")  # pragma: no cover
