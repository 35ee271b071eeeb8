"""Where the CLI's run commands go: the database (`LocalBackend`, through dagq.service) or,
with DAGQ_URL set (and DAGQ_API_KEY), the HTTP API (`RemoteBackend`, through dagq.Client).
Each command in dagq.cli.commands is written once over `backend()`; the two answer alike,
and print the same.

Also `repository()`: the Store the database-only commands (keys create, schedules,
tenants) use.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from pydantic_settings import BaseSettings, SettingsConfigDict

from dagq import service
from dagq.cli.follow import Chunk, Event, FeedItem
from dagq.cli.views import Snapshot
from dagq.config import Settings
from dagq.errors import InvalidRequest
from dagq.models import (
    ApiKeyRecord,
    BulkOutcome,
    RerunResult,
    ResolveResult,
    RunEvent,
    RunView,
    SignalResult,
    SubmitResult,
    WorkflowRecord,
)
from dagq.states import OPEN_RUN_STATUSES, TERMINAL_RUN_EVENTS
from dagq.traceparent import env_traceparent

if TYPE_CHECKING:
    from dagq.api.schemas import RunSummary
    from dagq.client import Client
    from dagq.store import Store

FEED_PAGE = 500  # feed items read at a time
FEED_POLL_S = 0.1
PROGRESS_POLL_S = 0.2
WARN_EVERY_S = 2.0  # how often --wait checks that live workers serve the run
MAX_PAGE = 500  # the API's largest page of runs
EVENTS_PAGE = 1000  # stored events read at a time by `dagq run events`

# How each node event moves a node on the progress bar through the API (unknown: ignored).
NODE_EVENT_STATUS = {
    "node_queued": "queued", "node_started": "running", "node_succeeded": "succeeded",
    "node_failed": "failed", "node_retry": "queued", "node_lease_expired": "queued",
    "node_skipped": "skipped", "node_cancelled": "cancelled", "node_waiting": "waiting",
    "node_released": "queued", "node_resolved": "succeeded",
}


class Backend(Protocol):
    """What the run commands need; the arguments are checked before (dagq.cli.parser)."""

    def submit(self, workflow: Any, inputs: Any, *, event_key: str | None, priority: int,
               version: int | None, tenant: str,
               metadata: dict[str, Any] | None = None) -> SubmitResult: ...

    def runs(self, run_filter: service.RunFilter,
             limit: int) -> Sequence[RunView | RunSummary]: ...

    def bulk(self, action: str, run_filter: service.RunFilter, *, limit: int,
             cursor: str | None, from_: list[str] | None) -> BulkOutcome:
        """One call of the bulk action (checked before): at most `limit` runs."""
        ...

    def run(self, run_id: uuid.UUID) -> RunView: ...

    def resolve(self, ref: uuid.UUID | str) -> uuid.UUID:
        """The run id a UUID or a unique id prefix (service.parse_run_ref's) names."""
        ...

    def cancel(self, run_id: uuid.UUID) -> str: ...

    def retry(self, run_id: uuid.UUID, items: str) -> str:
        """`items`: "all", or "failed" (a map node's succeeded items kept)."""
        ...

    def resolve_failed_node(self, run_id: uuid.UUID, node_key: str,
                            outputs: Any) -> ResolveResult:
        """A failed or cancelled node succeeded with `outputs`; its run goes on."""
        ...

    def events(self, run_id: uuid.UUID, after: int) -> Iterator[RunEvent]:
        """The run's stored events after event id `after`, as they are now."""
        ...

    def workflows(self) -> list[WorkflowRecord]: ...

    def workflow(self, name: str, version: int | None) -> WorkflowRecord: ...

    def keys(self, tenant: str | None) -> list[ApiKeyRecord]: ...

    def revoke_key(self, key_id: uuid.UUID) -> ApiKeyRecord: ...

    def rerun(self, run_id: uuid.UUID, from_: list[str], outputs: dict[str, Any] | None,
              inputs: Any) -> RerunResult: ...

    def signal(self, run_id: uuid.UUID, name: str, data: dict[str, Any] | None,
               signal_id: str | None) -> SignalResult: ...

    def feed(self, run_id: uuid.UUID) -> Iterator[FeedItem]:
        """The run's events and streamed chunks, in order, until the run ends."""
        ...

    def progress(self, run_id: uuid.UUID) -> Iterator[Snapshot]:
        """The run as it moves, until (and including) its end."""
        ...


class LocalBackend:
    """The database: dagq.service for every write, the store for reads."""

    def __init__(self, repo: Store, settings: Settings) -> None:
        self.repo, self.settings = repo, settings
        self.sleep = time.sleep  # between polls (a test steps the polls through it)

    def submit(self, workflow: Any, inputs: Any, *, event_key: str | None, priority: int,
               version: int | None, tenant: str,
               metadata: dict[str, Any] | None = None) -> SubmitResult:
        return service.submit(self.repo, tenant=tenant, workflow=workflow, version=version,
                              inputs=inputs, event_key=event_key, priority=priority,
                              metadata=metadata, traceparent=env_traceparent())

    def runs(self, run_filter: service.RunFilter, limit: int) -> list[RunView]:
        return self.repo.runs.list_runs(
            tenant=None, status=run_filter.status, workflow=run_filter.workflow, limit=limit,
            meta=run_filter.meta, created_after=run_filter.created_after,
            created_before=run_filter.created_before)

    def bulk(self, action: str, run_filter: service.RunFilter, *, limit: int,
             cursor: str | None, from_: list[str] | None) -> BulkOutcome:
        from dagq.api.schemas import decode_cursor, encode_cursor

        result = service.bulk_action(
            self.repo, cast(service.bulk.Action, action), tenant=None, run_filter=run_filter,
            limit=limit, cursor=decode_cursor(cursor) if cursor else None, from_=from_)
        after = result.next_cursor
        return BulkOutcome(acted=result.acted, skipped=result.skipped,
                           skipped_by=dict(result.skipped_by),
                           next_cursor=encode_cursor(*after) if after else None)

    def run(self, run_id: uuid.UUID) -> RunView:
        return service.get_run(self.repo, run_id)

    def resolve(self, ref: uuid.UUID | str) -> uuid.UUID:
        return service.resolve_run_id(self.repo, ref, None)

    def cancel(self, run_id: uuid.UUID) -> str:
        return service.cancel_run(self.repo, run_id, None)

    def retry(self, run_id: uuid.UUID, items: str) -> str:
        return service.retry_run(self.repo, run_id, None, items)

    def resolve_failed_node(self, run_id: uuid.UUID, node_key: str,
                            outputs: Any) -> ResolveResult:
        return service.resolve_node(self.repo, run_id, node_key, outputs, tenant=None,
                                    by=service.CLI_RESOLVER)

    def events(self, run_id: uuid.UUID, after: int) -> Iterator[RunEvent]:
        self.repo.runs.get_run(run_id, with_nodes=False)  # NotFound first
        while True:
            page = self.repo.runs.events(run_id, after=after, limit=EVENTS_PAGE)
            yield from page
            if len(page) < EVENTS_PAGE:
                return
            after = page[-1].id

    def workflows(self) -> list[WorkflowRecord]:
        return self.repo.workflows.list_workflows()

    def workflow(self, name: str, version: int | None) -> WorkflowRecord:
        return self.repo.workflows.get_workflow(name, version)

    def keys(self, tenant: str | None) -> list[ApiKeyRecord]:
        return service.list_api_keys(self.repo, tenant)

    def revoke_key(self, key_id: uuid.UUID) -> ApiKeyRecord:
        return service.revoke_api_key(self.repo, key_id, tenant=None,
                                      by=service.CLI_REVOKER)[0]

    def rerun(self, run_id: uuid.UUID, from_: list[str], outputs: dict[str, Any] | None,
              inputs: Any) -> RerunResult:
        return service.rerun_run(self.repo, run_id, None, from_=from_, outputs=outputs,
                                 inputs=inputs)

    def signal(self, run_id: uuid.UUID, name: str, data: dict[str, Any] | None,
               signal_id: str | None) -> SignalResult:
        return service.send_signal(self.repo, run_id, name, tenant=None, data=data,
                                   signal_id=signal_id,
                                   max_buffered=self.settings.max_buffered_signals_per_run)

    def feed(self, run_id: uuid.UUID) -> Iterator[FeedItem]:
        """Polls the run's feed until its terminal event, read to the end of the feed."""
        from dagq.store.streams import FeedCursor

        cursor = FeedCursor()
        run = self.repo.runs.get_run(run_id, with_nodes=False)  # NotFound first
        ended = False  # the latest run-level event is terminal (a retry's run_queued reopens)
        while True:
            feed = self.repo.streams.run_feed(run_id, cursor, limit=FEED_PAGE,
                                              since=run.created_at)
            for item in feed.items:
                row = item.row
                if item.kind == "chunk":
                    yield Chunk(row["node_key"], row["attempt"], row["text"], row["data"])
                else:
                    yield Event(row["type"], row["node_key"], row["attempt"], row["data"])
                    if row["node_key"] is None:
                        ended = row["type"] in TERMINAL_RUN_EVENTS
                cursor = item.cursor
            if ended and not feed.cut:
                return
            if not feed.cut:
                self.sleep(FEED_POLL_S)

    def progress(self, run_id: uuid.UUID) -> Iterator[Snapshot]:
        """Polls the run; every WARN_EVERY_S while it is open, which of its executors and
        queues no live worker serves."""
        run = self.repo.runs.get_run(run_id)
        next_check = 0.0
        while True:
            unserved = None
            if run.status in OPEN_RUN_STATUSES and time.monotonic() >= next_check:
                next_check = time.monotonic() + WARN_EVERY_S
                unserved = service.run_warnings(self.repo, run)
            yield Snapshot(run, [node.status for node in run.nodes or []], unserved)
            if run.status not in OPEN_RUN_STATUSES:
                return
            self.sleep(PROGRESS_POLL_S)
            run = self.repo.runs.get_run(run_id)


class RemoteBackend:
    """The HTTP API through dagq.Client; a run belongs to the tenant of DAGQ_API_KEY."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def submit(self, workflow: Any, inputs: Any, *, event_key: str | None, priority: int,
               version: int | None, tenant: str,
               metadata: dict[str, Any] | None = None) -> SubmitResult:
        if tenant != "default":
            raise InvalidRequest("--tenant does not apply with DAGQ_URL: a run belongs to the "
                                 "tenant of DAGQ_API_KEY")
        return self.client.submit(workflow, inputs, event_key=event_key, priority=priority,
                                  version=version, metadata=metadata,
                                  traceparent=env_traceparent())

    def runs(self, run_filter: service.RunFilter, limit: int) -> list[RunSummary]:
        pages = self.client.runs(
            run_filter.status, run_filter.workflow, page_size=min(limit, MAX_PAGE),
            metadata=run_filter.meta or None, created_after=run_filter.created_after,
            created_before=run_filter.created_before)
        return list(itertools.islice(pages, limit))

    def bulk(self, action: str, run_filter: service.RunFilter, *, limit: int,
             cursor: str | None, from_: list[str] | None) -> BulkOutcome:
        return self.client.bulk(
            action, status=run_filter.status, workflow=run_filter.workflow,
            metadata=run_filter.meta or None, created_after=run_filter.created_after,
            created_before=run_filter.created_before, limit=limit, cursor=cursor,
            from_=from_)

    def run(self, run_id: uuid.UUID) -> RunView:
        return self.client.run(run_id)

    def resolve(self, ref: uuid.UUID | str) -> uuid.UUID:
        if isinstance(ref, uuid.UUID):
            return ref
        found = self.client.runs_by_prefix(ref, service.MAX_MATCHES + 1)
        return service.one_match(ref, [run.run_id for run in found])

    def cancel(self, run_id: uuid.UUID) -> str:
        return self.client.cancel(run_id).status

    def retry(self, run_id: uuid.UUID, items: str) -> str:
        return self.client.retry(run_id, items).status

    def resolve_failed_node(self, run_id: uuid.UUID, node_key: str,
                            outputs: Any) -> ResolveResult:
        return self.client.resolve(run_id, node_key, outputs)

    def events(self, run_id: uuid.UUID, after: int) -> Iterator[RunEvent]:
        from dagq.models import RunEvent as Stored

        for event in self.client.events(run_id, after, follow=False):
            assert isinstance(event, Stored)  # follow=False pages stored events only
            yield event

    def workflows(self) -> list[WorkflowRecord]:
        return self.client.workflows()

    def workflow(self, name: str, version: int | None) -> WorkflowRecord:
        return self.client.workflow(name, version)

    def keys(self, tenant: str | None) -> list[ApiKeyRecord]:
        return self.client.api_keys(tenant)

    def revoke_key(self, key_id: uuid.UUID) -> ApiKeyRecord:
        return self.client.revoke_key(key_id)

    def rerun(self, run_id: uuid.UUID, from_: list[str], outputs: dict[str, Any] | None,
              inputs: Any) -> RerunResult:
        return self.client.rerun(run_id, from_, outputs, inputs)

    def signal(self, run_id: uuid.UUID, name: str, data: dict[str, Any] | None,
               signal_id: str | None) -> SignalResult:
        return self.client.signal(run_id, name, data, signal_id=signal_id)

    def feed(self, run_id: uuid.UUID) -> Iterator[FeedItem]:
        """The run's event stream (it ends after the run's terminal event)."""
        from dagq.client import StreamEvent

        for event in self.client.events(run_id):
            if isinstance(event, StreamEvent):
                data = event.data if isinstance(event.data, dict) else {}
                if event.type == "node_stream" and event.node_key:
                    yield Chunk(event.node_key, int(data.get("attempt") or 0),
                                data.get("text"), data.get("data"))
                continue
            yield Event(event.type, event.node_key, event.attempt, event.data)

    def progress(self, run_id: uuid.UUID) -> Iterator[Snapshot]:
        """Moved by the run's event stream; the run's warnings once, as the API gives them."""
        run = self.client.run(run_id)
        statuses = {node.key: node.status for node in run.nodes or []}
        yield Snapshot(run, list(statuses.values()), list(run.warnings or []))
        if run.status in OPEN_RUN_STATUSES:
            for event in self.client.events(run_id):
                status = NODE_EVENT_STATUS.get(event.type)
                key = getattr(event, "node_key", None)
                if status is not None and key in statuses:  # (not a mapped node's item)
                    statuses[key] = status
                    yield Snapshot(run, list(statuses.values()))
            run = self.client.wait(run_id)  # the finished run, as the database path shows it
        yield Snapshot(run, [node.status for node in run.nodes or []])


class ClientSettings(BaseSettings):
    """DAGQ_URL and DAGQ_API_KEY, from the environment or `.env` like every setting."""

    model_config = SettingsConfigDict(env_prefix="DAGQ_", env_file=".env", extra="ignore",
                                      frozen=True)

    url: str | None = None
    api_key: str | None = None


@contextlib.contextmanager
def backend(settings: Settings) -> Iterator[Backend]:
    """The API when DAGQ_URL is set, else the database; closed on exit."""
    remote = ClientSettings()
    if not remote.url:
        with repository(settings) as repo:
            yield LocalBackend(repo, settings)
        return
    from dagq.client import Client

    try:
        client = Client(remote.url, remote.api_key or None)
    except ValueError as exc:
        raise InvalidRequest(f"invalid configuration: DAGQ_URL: {exc}") from None
    with client:
        yield RemoteBackend(client)


@contextlib.contextmanager
def repository(settings: Settings, *, pool_size: int = 4,
               name: str = "cli") -> Iterator[Store]:
    """A repository on the existing, checked database, closed (and the embedded server
    stopped) on exit: what the CLI's one-shot commands use."""
    from dagq.runtime.bootstrap import database
    from dagq.runtime.db import open_pool
    from dagq.store import Store

    with database(settings) as db:
        repo = Store(open_pool(db.url, size=pool_size, name=name))
        try:
            yield repo
        finally:
            repo.close()
