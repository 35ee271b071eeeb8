"""Typed records the store returns (pydantic models at the edges)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from dagq.states import NodeStatus, RunStatus
from dagq.usage import RunUsage


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class SubmitResult(_Record):
    run_id: UUID
    status: RunStatus
    created: bool


class RerunResult(_Record):
    """A new run made from a terminal one (POST /v1/runs/{id}/rerun)."""

    run_id: UUID
    rerun_of: UUID


class ResolveResult(_Record):
    """A failed or cancelled node marked succeeded with given outputs
    (POST /v1/runs/{id}/nodes/{key}/resolve)."""

    run_id: UUID
    node_key: str
    status: NodeStatus = Field(description="the node's new status: succeeded")
    run_status: RunStatus = Field(description="the run's status after the resolve: running "
                                              "when nodes go on, else how it ended")


class LeasedNode(_Record):
    """A node leased by a worker: everything its executor needs, plus the fence."""

    id: int
    run_id: UUID
    node_key: str
    executor: str
    queue: str
    version: int
    attempts: int
    max_attempts: int
    timeout_s: float
    params: dict[str, Any]
    run_inputs: Any
    deps: dict[str, Any]
    item: Any = None
    item_index: int | None = None
    parent_id: int | None = None

    def payload(self) -> dict[str, Any]:
        """The executor's input (docs/workflows.md, "Executors")."""
        body: dict[str, Any] = {"run": self.run_inputs, "deps": self.deps, "params": self.params}
        if self.item_index is not None:
            body["item"] = self.item
            body["index"] = self.item_index
        return body


class HeartbeatResult(_Record):
    extended: frozenset[int]
    lost: frozenset[int]  # no longer this worker's running lease
    stop: frozenset[int]  # still held, but its run has finished: stop it


BlockedReason = Literal["dependencies", "signal", "timer", "retry_backoff", "paused",
                        "no_worker"]


class Blocked(_Record):
    """Why a node does not run now: a machine-readable `reason`, a sentence, since when,
    and until when where that is known (a back-off, a timer)."""

    reason: BlockedReason
    detail: str
    since: datetime | None = None
    until: datetime | None = None


class NodeView(_Record):
    key: str
    executor: str
    status: NodeStatus
    attempts: int
    max_attempts: int
    depends_on: list[str]
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    outputs: Any
    error: Any
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    items: int | None = None
    items_done: int | None = Field(None, description="a map node's items that ended")
    items_failed: int | None = Field(
        None, description="a map node's items that failed for good (on_item_error "
                          "continue or drop)")
    items_succeeded: int | None = Field(
        None, description="a map node's items that succeeded: what a retry with "
                          "items=failed keeps (the others run again)")
    wait: dict[str, Any] | None = Field(
        None, description="a wait node's `wait`: the signal or timer it waits for")
    wait_until: datetime | None = Field(
        None, description="when its timer fires or its signal wait times out")
    queue: str | None = None
    available_at: datetime | None = Field(
        None, description="a queued node: when it may start (later: a retry's back-off)")
    blocked: Blocked | None = Field(
        None, description="why this pending, queued or waiting node does not run now "
                          "(docs/flow-control.md); None: nothing known holds it")


class RunWarning(_Record):
    """Why an open run may not progress: e.g. no live worker serves some of its nodes."""

    code: Literal["unserved"]
    executor: str
    queue: str
    waiting: int = Field(description="node tasks that wait for such a worker")
    nodes: list[str] = Field(description="their node keys (at most 20)")
    message: str

    @classmethod
    def unserved(cls, row: dict[str, Any]) -> RunWarning:
        message = (f"no live worker serves executor {row['executor']} on queue "
                   f"{row['queue']}: {row['waiting']} node(s) wait "
                   f"({', '.join(row['nodes'])}); start a worker that does")
        return cls(code="unserved", message=message, **row)


class ChildRun(_Record):
    """A child run that a sub-workflow node (or one item of its map) started."""

    run_id: UUID
    node_key: str = Field(description="the parent's node (a map item: its map node's key)")
    item_index: int | None = Field(None, description="the map item's index, else null")
    status: RunStatus


class RunView(_Record):
    run_id: UUID
    tenant: str
    workflow: str
    workflow_version: int | None
    event_key: str | None
    status: RunStatus
    priority: int
    fail_fast: bool
    inputs: Any
    outputs: Any
    error: Any
    nodes_total: int
    nodes_remaining: int
    deadline_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    nodes: list[NodeView] | None = None
    warnings: list[RunWarning] = Field(default_factory=list)
    blocked: Blocked | None = Field(
        None, description="an open run: the reason of its earliest-blocked node")
    rerun_of: UUID | None = Field(None, description="the run this one reruns")
    concurrency_key: str | None = Field(
        None, description="the run's concurrency key (`path=value` from its inputs)")
    concurrency_waiting: bool = Field(
        False, description="queued and waiting for a slot of its concurrency key")
    parent_run_id: UUID | None = Field(
        None, description="the run whose sub-workflow node started this one")
    parent_node_key: str | None = Field(None, description="that node's key")
    children: list[ChildRun] | None = Field(
        None, description="the runs this run's sub-workflow nodes started (oldest first)")
    metadata: dict[str, str | int | float | bool] | None = Field(
        None, description="the submit's metadata (a rerun keeps its original's)")
    usage: RunUsage | None = Field(
        None, description="model usage (the cost ledger): per node attempt, the run's "
                          "total, with its child runs, and a rerun's saved spend")


class BulkOutcome(_Record):
    """What one call of POST /v1/runs/bulk/{cancel|retry|rerun} did."""

    acted: int = Field(description="runs the action was applied to")
    skipped: int = Field(description="runs it did not apply to (already done, not found, "
                                     "...): idempotent, never an error")
    skipped_by: dict[str, int] = Field(description="the skips by reason")
    next_cursor: str | None = Field(description="pass as `cursor` (with the same filter) "
                                                "to go on; null when done")


class SignalResult(_Record):
    """A signal sent to a run: delivered to a waiting node, or buffered until one waits."""

    run_id: UUID
    signal: str
    signal_id: str
    delivered: bool = Field(description="a waiting node took it (false: buffered)")
    node_key: str | None = Field(None, description="the wait node that took it")
    duplicate: bool = Field(False, description="this signal_id was sent before: no-op")


class RunEvent(_Record):
    id: int
    run_id: UUID
    node_key: str | None
    type: str
    attempt: int | None
    data: Any
    created_at: datetime


class WorkflowRecord(_Record):
    name: str
    version: int
    spec: dict[str, Any]
    created_at: datetime | None = None


class TenantRecord(_Record):
    """A tenant's weight and quotas (None: no limit), and its load when listed."""

    name: str
    weight: float = 1.0
    max_queued_runs: int | None = None
    max_running_nodes: int | None = None
    submit_rate: float | None = None
    updated_at: datetime | None = None
    queued_runs: int | None = None
    running_runs: int | None = None
    queued_nodes: int | None = None
    running_nodes: int | None = None


class ApiKey(_Record):
    id: UUID
    tenant: str
    admin: bool
    key_hash: str = ""  # empty for the anonymous admin of DAGQ_AUTH=off


class ApiKeyRecord(_Record):
    """An API key as listed (`dagq keys list`, GET /v1/keys): never the key nor its hash.
    `revoked_by` says who revoked it ("key <id> (tenant <t>)", or "cli")."""

    id: UUID
    tenant: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None = None
    revoked_by: str | None = None


class ExecutorInfo(_Record):
    name: str
    queue: str = "default"
    max_attempts: int | None = None
    timeout_s: float | None = None
    concurrency: int | None = None
    rate_per_s: float | None = None


class ScheduleRecord(_Record):
    schedule_id: UUID
    tenant: str
    workflow: Any
    version: int | None
    cron: str
    timezone: str
    inputs: Any
    created_at: datetime
    last_fire_at: datetime | None
    last_run_id: UUID | None
    last_error: str | None
    while_paused: Literal["queue", "skip"] = Field(
        "queue", description="a firing into a pause: queue the run, or skip the firing")


# The event types a webhook may subscribe to (issue 33): a run's end, a node's final
# failure, a node waiting for a signal (a person). The trigger of migration 029 names
# the same set.
WEBHOOK_EVENTS = ("run_succeeded", "run_failed", "run_cancelled", "run_partial_succeeded",
                  "node_failed", "node_waiting")


class WebhookRecord(_Record):
    """A subscription as listed: never its secret (shown once, when created)."""

    id: UUID
    tenant: str
    url: str
    events: list[str]
    workflow: str | None = None
    run_id: UUID | None = None
    created_at: datetime


class WebhookAttempt(_Record):
    """One attempt at a delivery: the HTTP status (None: no reply, see `error`), how long
    it took, and the first characters of the reply."""

    attempt: int
    at: datetime
    status_code: int | None = None
    latency_ms: int
    response: str | None = None
    error: str | None = None


class WebhookDelivery(_Record):
    """One event sent to one subscription: `pending` until a 2xx (`succeeded`) or until
    the retries are given up (`failed`; a redeliver makes it `pending` again)."""

    id: UUID
    webhook_id: UUID
    tenant: str
    run_id: UUID
    event: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    finished_at: datetime | None = None
    last_error: str | None = None
    history: list[WebhookAttempt] = []


class EventRun(_Record):
    """A run an event started (None status: the run was pruned since)."""

    workflow: str
    version: int | None = None
    run_id: UUID
    status: RunStatus | None = None


class EventRecord(_Record):
    """An event (POST /v1/events) and the runs it started. `created`: this request
    stored it (False: the same event_id was emitted before; these are its runs)."""

    id: UUID
    tenant: str
    event_id: str
    name: str
    payload: Any = None
    created_at: datetime
    runs: list[EventRun] = []
    created: bool = True


PauseKind = Literal["queue", "workflow", "run", "tenant"]
PAUSE_KINDS: tuple[str, ...] = ("queue", "workflow", "run", "tenant")


class PauseRecord(_Record):
    """A pause (migration 039): active while `resumed_at` is None. `tenant`: whose thing
    it pauses (a run's tenant, the tenant itself); None for a queue or a workflow."""

    id: UUID
    kind: PauseKind
    name: str
    tenant: str | None = None
    reason: str | None = None
    refuse_submits: bool = False
    created_by: str
    created_at: datetime
    resumed_by: str | None = None
    resumed_at: datetime | None = None
