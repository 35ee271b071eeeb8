"""Every API operation as a `Call`: the request to send, whether it is safe to send twice,
and how its reply becomes the API's own model. The sync and async clients only send them."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from dagq.api.schemas import (
    KeyList,
    QueueList,
    QueueStats,
    RunAction,
    RunList,
    RunSummary,
    WorkflowList,
    WorkflowRef,
)
from dagq.errors import InvalidWorkflow
from dagq.models import (
    ApiKeyRecord,
    BulkOutcome,
    EventRecord,
    RerunResult,
    ResolveResult,
    RunEvent,
    RunView,
    ScheduleRecord,
    SignalResult,
    SubmitResult,
    WorkflowRecord,
)
from dagq.traceparent import check_traceparent, current_traceparent

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

EVENTS_PAGE = 1000
_EVENT_LIST = TypeAdapter(list[RunEvent])
_SCHEDULES = TypeAdapter(list[ScheduleRecord])


@runtime_checkable
class SpecSource(Protocol):
    """A workflow written in Python (`dagq.Workflow`): anything whose `to_spec()` gives
    the JSON spec. Structural, so the client does not import the spec package."""

    def to_spec(self) -> dict[str, Any]: ...


Spec = Mapping[str, Any] | SpecSource


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request. `idempotent`: sending it twice has the effect of sending it once, so
    a lost reply or a 503 may be retried."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    body: Any = None
    idempotent: bool = False
    headers: dict[str, str] | None = None


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: model.model_validate(response.json())


def _segment(value: object) -> str:
    return quote(str(value), safe="")


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def load_spec(spec: Spec | str | os.PathLike[str]) -> dict[str, Any]:
    """A workflow spec given as a mapping, a `dagq.Workflow` (its `to_spec()`, which
    raises InvalidWorkflow before anything is sent), or the path of a .json/.yaml file."""
    if isinstance(spec, Mapping):
        return dict(spec)
    if isinstance(spec, SpecSource):
        return spec.to_spec()
    path = Path(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidWorkflow(f"cannot read workflow file {str(path)!r}: {exc.strerror}") \
            from None
    import yaml

    is_yaml = path.suffix in (".yaml", ".yml")
    try:
        return yaml.safe_load(text) if is_yaml else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "YAML" if is_yaml else "JSON"
        raise InvalidWorkflow(f"{path} is not valid {kind}: {exc}") from None


def _workflow(workflow: str | Spec) -> str | dict[str, Any]:
    """A submit's or a schedule's `workflow`: a registered name, or an inline spec."""
    return workflow if isinstance(workflow, str) else load_spec(workflow)


# ----- workflows ----------------------------------------------------------------------

def register_workflow(spec: Spec | str | os.PathLike[str]) -> Call[tuple[WorkflowRef, bool]]:
    # Idempotent: the same spec again answers 200 with the same version (so a resend
    # after a lost reply that had registered it reports created=False).
    return Call("POST", "/v1/workflows", lambda r: (WorkflowRef.model_validate(r.json()),
                                                    r.status_code == 201),
                body=load_spec(spec), idempotent=True)


def workflows() -> Call[list[WorkflowRecord]]:
    return Call("GET", "/v1/workflows",
                lambda r: WorkflowList.model_validate(r.json()).workflows, idempotent=True)


def workflow(name: str, version: int | None) -> Call[WorkflowRecord]:
    return Call("GET", f"/v1/workflows/{_segment(name)}", _model(WorkflowRecord),
                params=_params(version=version), idempotent=True)


# ----- runs ---------------------------------------------------------------------------

def submit(
    workflow: str | Spec, inputs: Any, event_key: str | None, priority: int | None,
    deadline_s: float | None, version: int | None,
    concurrency: dict[str, Any] | None = None, metadata: Mapping[str, Any] | None = None,
    callback: Mapping[str, Any] | None = None, traceparent: str | None = None,
    budget: Mapping[str, Any] | None = None,
) -> Call[SubmitResult]:
    body = _params(workflow=_workflow(workflow), version=version, inputs=inputs,
                   event_key=event_key, priority=priority, deadline_s=deadline_s,
                   concurrency=concurrency,
                   metadata=dict(metadata) if metadata is not None else None,
                   callback=dict(callback) if callback is not None else None,
                   budget=dict(budget) if budget is not None else None)
    # The run joins the given trace, else the caller's current span's (read now, in the
    # caller's context); checked here, so a bad one is an error before anything is sent.
    trace = check_traceparent(traceparent) or current_traceparent()
    # Only an event key makes a second POST find the first run instead of a new one.
    return Call("POST", "/v1/runs", _model(SubmitResult), body=body,
                idempotent=event_key is not None,
                headers={"traceparent": trace} if trace else None)


def run(run_id: uuid.UUID | str) -> Call[RunView]:
    return Call("GET", f"/v1/runs/{_segment(run_id)}", _model(RunView), idempotent=True)


def runs_page(
    status: str | None, workflow: str | None, tenant: str | None, limit: int,
    cursor: str | None, parent: uuid.UUID | str | None = None,
    metadata: Mapping[str, Any] | None = None, created_after: datetime | str | None = None,
    created_before: datetime | str | None = None,
) -> Call[RunList]:
    params = _params(status=status, workflow=workflow, tenant=tenant, limit=limit,
                     cursor=cursor, parent=str(parent) if parent else None,
                     created_after=_time(created_after), created_before=_time(created_before))
    params.update({f"meta.{key}": _scalar(value) for key, value in (metadata or {}).items()})
    return Call("GET", "/v1/runs", _model(RunList), idempotent=True, params=params)


def _time(value: datetime | str | None) -> str | None:
    """A time as the API reads it: ISO 8601 (a time without an offset is UTC)."""
    return value.isoformat() if isinstance(value, datetime) else value


def _scalar(value: Any) -> str:
    """A metadata value as a filter spells it: true/false, 5, 2.5, or the text itself."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def bulk(action: str, *, ids: list[uuid.UUID | str] | None, run_filter: dict[str, Any] | None,
         limit: int, cursor: str | None, from_: list[str] | None) -> Call[BulkOutcome]:
    # Idempotent: a run the action does not apply to (any more) is skipped, so a resend
    # after a lost reply acts on nothing twice (a rerun skips a run rerun before).
    body = _params(ids=[str(i) for i in ids] if ids is not None else None,
                   filter=run_filter, limit=limit, cursor=cursor)
    if from_ is not None:
        body["from"] = list(from_)
    return Call("POST", f"/v1/runs/bulk/{_segment(action)}", _model(BulkOutcome), body=body,
                idempotent=True)


def bulk_filter(status: str | None, workflow: str | None, metadata: Mapping[str, Any] | None,
                created_after: datetime | str | None,
                created_before: datetime | str | None) -> dict[str, Any]:
    return _params(status=status, workflow=workflow,
                   meta=dict(metadata) if metadata else None,
                   created_after=_time(created_after), created_before=_time(created_before))


def runs_by_prefix(prefix: str, limit: int) -> Call[list[RunSummary]]:
    return Call("GET", "/v1/runs", lambda r: RunList.model_validate(r.json()).runs,
                params={"id_prefix": prefix, "limit": limit}, idempotent=True)


def events_path(run_id: uuid.UUID | str) -> str:
    return f"/v1/runs/{_segment(run_id)}/events"


def events_page(run_id: uuid.UUID | str, after: int, limit: int) -> Call[list[RunEvent]]:
    """Stored run events only (no streamed chunks: follow the stream, or read a node's
    text with /nodes/{key}/stream)."""
    return Call("GET", events_path(run_id), lambda r: _EVENT_LIST.validate_python(r.json()),
                params={"format": "json", "after": after, "limit": limit, "stream": "false"},
                idempotent=True)


def event_id(after: int | str | None) -> int:
    """The event id in `after`: an event id, or an SSE cursor `E.C` (its E)."""
    try:
        return int(str(after or 0).partition(".")[0] or 0)
    except ValueError:
        raise ValueError(f"after must be an event id or an SSE id, not {after!r}") from None


def cancel(run_id: uuid.UUID | str) -> Call[RunAction]:
    # Idempotent: cancelling a cancelled run answers 202 again and changes nothing.
    return Call("POST", f"/v1/runs/{_segment(run_id)}/cancel", _model(RunAction),
                idempotent=True)


def retry(run_id: uuid.UUID | str, items: str = "all") -> Call[RunAction]:
    # Not retried after a reply was lost: if the run failed again in between, a resend
    # would requeue it again and rerun its nodes. No body for "all" (as before 0.3).
    return Call("POST", f"/v1/runs/{_segment(run_id)}/retry", _model(RunAction),
                body={"items": items} if items != "all" else None)


def resolve(run_id: uuid.UUID | str, node_key: str, outputs: Any) -> Call[ResolveResult]:
    # Not retried after a reply was lost: the resend of a resolve that worked is a 409
    # (the node is no longer failed), which would hide that it worked.
    return Call("POST", f"/v1/runs/{_segment(run_id)}/nodes/{_segment(node_key)}/resolve",
                _model(ResolveResult), body={"outputs": outputs})


def rerun(run_id: uuid.UUID | str, from_: list[str], outputs: Mapping[str, Any] | None,
          inputs: Any) -> Call[RerunResult]:
    # Not retried after a reply was lost: a resend would make a second new run.
    if isinstance(from_, str):
        from_ = [from_]
    body = _params(outputs=dict(outputs) if outputs is not None else None, inputs=inputs)
    return Call("POST", f"/v1/runs/{_segment(run_id)}/rerun", _model(RerunResult),
                body={"from": list(from_), **body})


def signal(
    run_id: uuid.UUID | str, name: str, data: Mapping[str, Any] | None, signal_id: str | None,
) -> Call[SignalResult]:
    # Idempotent by signal_id: one is made up when not given, so a resend after a lost
    # reply is the same signal (200, duplicate) and never a second one.
    body = _params(data=dict(data) if data is not None else None,
                   signal_id=signal_id or str(uuid.uuid4()))
    return Call("POST", f"/v1/runs/{_segment(run_id)}/signals/{_segment(name)}",
                _model(SignalResult), body=body, idempotent=True)


# ----- schedules and queues -----------------------------------------------------------

def create_schedule(
    workflow: str | Spec, cron: str, inputs: Any, timezone: str | None, version: int | None,
) -> Call[uuid.UUID]:
    body = _params(workflow=_workflow(workflow), cron=cron, inputs=inputs, timezone=timezone,
                   version=version)
    return Call("POST", "/v1/schedules", lambda r: uuid.UUID(r.json()["schedule_id"]),
                body=body)


def schedule(schedule_id: uuid.UUID | str) -> Call[ScheduleRecord]:
    return Call("GET", f"/v1/schedules/{_segment(schedule_id)}", _model(ScheduleRecord),
                idempotent=True)


def schedules() -> Call[list[ScheduleRecord]]:
    return Call("GET", "/v1/schedules",
                lambda r: _SCHEDULES.validate_python(r.json()["schedules"]), idempotent=True)


def delete_schedule(schedule_id: uuid.UUID | str) -> Call[None]:
    # Not retried after a reply was lost: the retry of a delete that worked is a 404.
    return Call("DELETE", f"/v1/schedules/{_segment(schedule_id)}", lambda r: None)


def queues() -> Call[list[QueueStats]]:
    return Call("GET", "/v1/queues", lambda r: QueueList.model_validate(r.json()).queues,
                idempotent=True)


# ----- waits for a person (docs/forms.md) ---------------------------------------------

def waits(run_id: uuid.UUID | str | None, assignee: str | None, tenant: str | None,
          limit: int | None, links: bool) -> Call[list[dict[str, Any]]]:
    # A retry mints another respond link per wait: harmless (every link stays valid).
    params = _params(assignee=assignee, tenant=tenant, limit=limit,
                     links=None if links else "false")
    path = f"/v1/runs/{_segment(run_id)}/waits" if run_id is not None else "/v1/waits"
    return Call("GET", path, lambda r: list(r.json()["waits"]), params=params,
                idempotent=True)


def respond(token: str, data: Mapping[str, Any] | None) -> Call[dict[str, Any]]:
    # Not retried: a lost reply and a second try would find the link used (410).
    return Call("POST", f"/v1/respond/{_segment(token)}", lambda r: dict(r.json()),
                body={"data": dict(data or {})})


# ----- API keys -----------------------------------------------------------------------

def api_keys(tenant: str | None) -> Call[list[ApiKeyRecord]]:
    return Call("GET", "/v1/keys", lambda r: KeyList.model_validate(r.json()).keys,
                params=_params(tenant=tenant), idempotent=True)


def revoke_key(key_id: uuid.UUID | str) -> Call[ApiKeyRecord]:
    # Idempotent: revoking a revoked key answers its record again and changes nothing.
    return Call("DELETE", f"/v1/keys/{_segment(key_id)}", _model(ApiKeyRecord),
                idempotent=True)


# ----- events (triggers) ----------------------------------------------------------------

def emit(name: str, payload: Mapping[str, Any] | None, event_id: str | None,
         metadata: Mapping[str, Any] | None) -> Call[EventRecord]:
    # Idempotent by event_id: one is made up when not given, so a resend after a lost
    # reply is the same event (200, the same runs), never a second one.
    body = _params(name=name, payload=dict(payload) if payload is not None else {},
                   event_id=event_id or str(uuid.uuid4()),
                   metadata=dict(metadata) if metadata is not None else None)
    return Call("POST", "/v1/events", _model(EventRecord), body=body, idempotent=True)


def event(event_id: uuid.UUID | str) -> Call[EventRecord]:
    return Call("GET", f"/v1/events/{_segment(event_id)}", _model(EventRecord),
                idempotent=True)
