"""Pydantic models of what the API accepts and returns (they also feed /openapi.json)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)

from dagq.api.error_summary import RunErrorSummary  # its own module, named here too
from dagq.errors import InvalidRequest
from dagq.models import WEBHOOK_EVENTS as _EVENTS
from dagq.models import ApiKeyRecord, RunView, SubmitResult, WorkflowRecord
from dagq.spec import metadata as _meta
from dagq.spec.workflow import KEY_PATTERN, MAX_PRIORITY, Concurrency
from dagq.states import RunStatus

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
MAX_PAGE = 500
MAX_EVENTS_PAGE = 10_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# An SSE event id; empty means none (as if absent).
# A feed cursor: `E` (an event id) or `E.C` (an event id and a streamed chunk's id).
CURSOR_TEXT = r"[0-9]{1,18}(\.[0-9]{1,18})?"
LAST_EVENT_ID_PATTERN = rf"^({CURSOR_TEXT})?$"
FEED_CURSOR_PATTERN = rf"^{CURSOR_TEXT}$"

WorkflowName = Annotated[str, Field(pattern=KEY_PATTERN, description="a registered name")]
# Validated by service.resolve_workflow (one InvalidWorkflow naming every problem);
# documented as the WorkflowSpec it must be.
InlineSpec = Annotated[dict[str, Any], WithJsonSchema(
    {"$ref": "#/components/schemas/WorkflowSpec"})]
# 'version' picks a version of a registered workflow: with an inline spec it is an error.
VERSION_NEEDS_NAME = {
    "if": {"required": ["workflow"], "properties": {"workflow": {"type": "object"}}},
    "then": {"properties": {"version": {"type": "null"}}},
}
# Keyset cursor: microseconds since the epoch of the last run's created_at, and its id.
# Every string of this shape is a cursor the API accepts (1653..2286: 16 digits).
CURSOR_PATTERN = r"^-?[0-9]{1,16}_[0-9a-f]{32}$"
# A time in a query: an ISO 8601 date, or date and time (an offset, or UTC without one).
TIME_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
                r"(Z|[+-][0-9]{2}:[0-9]{2})?)?$")
META_PREFIX = "meta."
# A tenant name is any text Postgres can store (no NUL).
TENANT_PATTERN = r"^[^\u0000]+$"


class _Body(BaseModel):
    """Request bodies: unknown fields and type coercion are errors."""

    model_config = ConfigDict(extra="forbid", strict=True)


class _Query(BaseModel):
    """Query strings: values arrive as text; unknown parameters are ignored."""

    model_config = ConfigDict(extra="ignore")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


# What dagq.spec.metadata.check_metadata accepts, but its 2 KiB bound (which JSON Schema
# cannot state: a larger object is a 422). Checked there, with a message naming the key.
METADATA_SCHEMA = {
    "type": "object", "maxProperties": _meta.MAX_KEYS,
    "propertyNames": {"pattern": _meta.KEY_PATTERN},
    "additionalProperties": {"anyOf": [
        {"type": "string", "maxLength": _meta.MAX_TEXT},
        {"type": "number"}, {"type": "boolean"}]},
    "description": f"the platform's own ids, to find the run by (GET /v1/runs?meta.K=V): "
                   f"at most {_meta.MAX_KEYS} keys of 1-64 characters [A-Za-z0-9_.:-], each "
                   f"a string (at most {_meta.MAX_TEXT} characters), number or boolean; at "
                   f"most {_meta.MAX_BYTES} bytes as JSON. Not part of the event_key's "
                   "fingerprint: a resubmit returns the run with its first metadata",
}
Metadata = Annotated[dict[str, Any] | None, WithJsonSchema(
    {"anyOf": [METADATA_SCHEMA, {"type": "null"}]})]


# ----- requests -----------------------------------------------------------------------

class Callback(_Body):
    """A submit's webhook: this run's events only, signed with `secret` (docs/webhooks.md)."""

    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://")
    events: list[Literal[_EVENTS]] = Field(  # type: ignore[valid-type]
        ["run_succeeded", "run_failed", "run_cancelled", "run_partial_succeeded"],
        min_length=1, max_length=len(_EVENTS))
    secret: str | None = Field(None, min_length=16, max_length=200)


class SubmitRunBody(_Body):
    model_config = ConfigDict(json_schema_extra=VERSION_NEEDS_NAME)

    workflow: WorkflowName | InlineSpec = Field(
        description="a registered workflow name, or an inline workflow spec")
    version: int | None = Field(None, ge=1, le=INT32_MAX,
                                description="version of a registered workflow (latest if "
                                            "absent)")
    inputs: Any = Field(None, description="run inputs (any JSON; {} if absent)")
    event_key: str | None = Field(None, min_length=1, max_length=512,
                                  description="idempotency key, unique per tenant")
    priority: int = Field(0, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    deadline_s: float | None = Field(None, gt=0, le=30 * 86_400,
                                     description="fail the run if not finished in time")
    concurrency: Concurrency | None = Field(
        None, description="at most `limit` open runs per value of `key` (instead of the "
                          "workflow's concurrency)")
    metadata: Metadata = None
    callback: Callback | None = Field(None, description="POST this run's events to a URL")


class SignalBody(_Body):
    data: dict[str, Any] | None = Field(
        None, description="the signal's payload: the wait node's outputs.data")
    signal_id: str | None = Field(
        None, min_length=1, max_length=200, pattern=TENANT_PATTERN,
        description="idempotency key: the same signal_id again is a no-op (200)")


class RetryBody(_Body):
    """POST /v1/runs/{run_id}/retry (optional: no body retries every item)."""

    items: Literal["all", "failed"] = Field(
        "all", description="`failed`: a map node keeps its succeeded items (and their "
                           "outputs) and runs only the others again; `all` (default): a "
                           "map node runs every item again")


class ResolveBody(_Body):
    """POST /v1/runs/{run_id}/nodes/{node_key}/resolve."""

    outputs: dict[str, Any] | list[Any] = Field(
        description="the node's outputs from now on: a JSON object (a JSON list for a map "
                    "node: one entry per item)")


class RerunBody(_Body):
    model_config = ConfigDict(populate_by_name=True)

    from_: list[Annotated[str, Field(pattern=KEY_PATTERN)]] = Field(
        alias="from", min_length=1, max_length=1000,
        description="the nodes to run again (with everything downstream of them)")
    outputs: dict[str, dict[str, Any]] | None = Field(
        None, description="outputs to use instead of the recorded ones, by node key (only "
                          "nodes that are copied)")
    inputs: Any = Field(None, description="the new run's inputs (the original's if absent)")


MAX_BATCH_RUNS = 1000
MIN_SETTING = 0.001  # smallest weight or rate (a smaller float would round to 0 as real)


def _integral(value: Any) -> Any:
    """5.0 is the integer 5 in JSON (and JSON Schema); a float with a fraction stays one
    (and is refused)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Count = Annotated[int, Field(ge=0, le=INT32_MAX), BeforeValidator(_integral)]


class PutTenantBody(_Body):
    """A tenant's settings, replaced whole: a field left out is its default (no limit)."""

    weight: float = Field(1.0, ge=MIN_SETTING, le=1000,
                          description="share of leases (default 1; not used by leasing yet)")
    max_queued_runs: Count | None = Field(None, description="runs not yet started, at most")
    max_running_nodes: Count | None = Field(None,
                                          description="not used by leasing yet")
    submit_rate: float | None = Field(None, ge=MIN_SETTING, le=1_000_000,
                                      description="runs per second, at most")


class SubmitBatchBody(_Body):
    runs: list[Any] = Field(min_length=1, max_length=MAX_BATCH_RUNS,
                            description="up to 1,000 submissions, each as the body of "
                                        "POST /v1/runs; each gets its own result")


class ListRunsQuery(_Query):
    status: RunStatus | None = None
    workflow: Annotated[str, Field(pattern=KEY_PATTERN)] | None = None
    created_after: str | None = Field(
        None, pattern=TIME_PATTERN, description="only runs created at or after this time "
        "(ISO 8601: a date, or a date and time; UTC without an offset)")
    created_before: str | None = Field(
        None, pattern=TIME_PATTERN, description="only runs created before this time "
        "(ISO 8601, as created_after)")
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(None, pattern=CURSOR_PATTERN,
                               description="next_cursor of the previous page")
    tenant: str | None = Field(None, min_length=1, max_length=200, pattern=TENANT_PATTERN,
                               description="admin keys only: one tenant's runs")
    parent: UUID | None = Field(None, description="only the child runs of this run")
    id_prefix: str | None = Field(
        None, min_length=4, max_length=36, pattern=r"^-*(?:[0-9A-Fa-f]-*){4,32}$",
        description="only the runs whose id starts with this (at least 4 hex digits, "
                    "dashes optional): at most `limit` by id, no next page; not with "
                    "status, workflow, parent or cursor")


class KeysQuery(_Query):
    """GET /v1/keys: an admin key may ask for one tenant's keys."""

    tenant: str | None = Field(None, min_length=1, max_length=200, pattern=TENANT_PATTERN,
                               description="admin keys only: one tenant's keys")


class WorkflowVersionQuery(_Query):
    version: int | None = Field(None, ge=1, le=INT32_MAX)


class EventsQuery(_Query):
    format: Literal["sse", "json"] = "sse"
    after: str = Field("0", pattern=FEED_CURSOR_PATTERN,
                       description="resume after this cursor: an event id, or an SSE id / "
                                   "`cursor` `E.C` (Last-Event-ID wins)")
    stream: bool = Field(True, description="include node_stream chunks (streamed output)")
    limit: int = Field(1000, ge=1, le=MAX_EVENTS_PAGE, description="format=json only")


class NodeStreamQuery(_Query):
    attempt: int | None = Field(None, ge=1, le=INT32_MAX,
                                description="that attempt's stream (default: the latest)")


class NodeStream(BaseModel):
    """A node attempt's streamed output so far."""

    attempt: int = Field(description="the attempt (0: the node has not started)")
    text: str = Field(description="its text chunks joined")
    data: list[dict[str, Any]] = Field(description="its data chunks, in order")
    chunks: int = Field(description="how many chunks")
    complete: bool = Field(description="the attempt is over: nothing more will come")


# ----- responses ----------------------------------------------------------------------

class ErrorDetail(_Out):
    code: str
    message: str
    details: Any = None


class ErrorBody(_Out):
    error: ErrorDetail


class BatchResults(_Out):
    results: list[SubmitResult | ErrorBody] = Field(
        description="one per submitted item, in order: its result as POST /v1/runs "
                    "answers it (created or the existing run of its event key), or its "
                    "error")


class WorkflowRef(_Out):
    name: str
    version: int


class WorkflowList(_Out):
    workflows: list[WorkflowRecord]


class RunSummary(_Out):
    run_id: UUID
    tenant: str
    workflow: str
    workflow_version: int | None
    event_key: str | None
    status: RunStatus
    priority: int
    nodes_total: int
    nodes_remaining: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    parent_run_id: UUID | None = None
    parent_node_key: str | None = None
    metadata: dict[str, str | int | float | bool] | None = None
    error: RunErrorSummary | None = Field(
        None, description="a failed (or partly failed) run's failed node and the first line "
                          "of its error")

    @field_validator("error", mode="before")
    @classmethod
    def _summarise(cls, error: Any) -> RunErrorSummary | None:
        return RunErrorSummary.of(error)

    @classmethod
    def of(cls, run: RunView) -> RunSummary:
        return cls.model_validate(run.model_dump(include=set(cls.model_fields)))


class RunList(_Out):
    runs: list[RunSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class KeyList(_Out):
    """GET /v1/keys: the keys a caller may see."""

    keys: list[ApiKeyRecord] = Field(description="oldest first, revoked ones too; never "
                                                 "a key or its hash")


class RunAction(_Out):
    run_id: UUID
    status: RunStatus


class QueueTenant(_Out):
    name: str = Field(description="the tenant")
    queued: int = Field(description="its nodes ready to run now")
    delayed: int
    running: int
    weight: float = Field(description="its share of starts against other tenants")
    max_running_nodes: int | None = None


class QueueStats(_Out):
    name: str
    queued: int = Field(description="ready to run now")
    delayed: int = Field(description="queued with available_at in the future (backoff)")
    running: int
    oldest_queued_age_s: float = Field(description="how long the oldest ready node waits")
    failed_last_hour: int
    tenants: list[QueueTenant] = Field(
        default_factory=list, description="per tenant with queued or running nodes here")


class QueueList(_Out):
    queues: list[QueueStats]


class Health(_Out):
    status: Literal["ok", "ready"]
    pending_migrations: list[int] | None = None
    workers: int | None = Field(None, description="live workers (readiness does not "
                                                  "depend on them)")
    warnings: list[str] | None = None


# ----- filters ------------------------------------------------------------------------

def parse_time(text: str | None, name: str) -> datetime | None:
    """An ISO 8601 time of TIME_PATTERN's shape (UTC without an offset), or 422."""
    if text is None:
        return None
    try:
        if not re.fullmatch(TIME_PATTERN, text):
            raise ValueError("not an ISO 8601 date or date and time")
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidRequest(f"{name} {text[:100]!r} is not a time: {exc}",
                             [{"loc": ["query", name], "msg": str(exc),
                               "type": "value_error"}]) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def meta_filters(items: list[tuple[str, str]]) -> dict[str, str]:
    """The meta.K=V query parameters as {K: V} (checked; a key given twice is a 422)."""
    found: dict[str, str] = {}
    for name, value in items:
        if name.startswith(META_PREFIX):
            key = name[len(META_PREFIX):]
            if key in found:
                raise InvalidRequest(f"meta.{key[:100]} is given twice", {"key": key[:100]})
            found[key] = value
    return _meta.check_filters(found)


# ----- keyset cursor ------------------------------------------------------------------

def encode_cursor(created_at: datetime, run_id: UUID) -> str:
    micros = (created_at - EPOCH) // timedelta(microseconds=1)
    return f"{micros}_{run_id.hex}"


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise InvalidRequest("invalid cursor: pass back a next_cursor value unchanged",
                             [{"loc": ["query", "cursor"], "msg": "invalid cursor",
                               "type": "value_error"}])
    micros, run_id = cursor.split("_")
    return EPOCH + timedelta(microseconds=int(micros)), UUID(hex=run_id)
