"""The rows a new run becomes (a submit, a group commit, a child run, a rerun): its
node_tasks rows, the validated submission (`NewRun`, built from a `RunTemplate`), and
the one place that builds a new run's first events (`first_events`)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from dagq.errors import DagqError, InvalidRequest
from dagq.spec.workflow import (
    MAX_CONCURRENCY_KEY_BYTES,
    WAIT_EXECUTOR,
    WORKFLOW_EXECUTOR,
    Concurrency,
    WorkflowSpec,
)
from dagq.store.machine.waits import wait_deadline


def node_rows(spec: WorkflowSpec, run_priority: int) -> list[dict[str, Any]]:
    """The node_tasks rows of a new run, as JSON for jsonb_to_recordset."""
    defaults = spec.defaults
    dependents = spec.dependents()
    rows = []
    for key in spec.topological_order():
        node = spec.nodes[key]
        backoff = node.backoff or defaults.backoff
        wait = node.wait.model_dump(mode="json", exclude_none=True) if node.wait else None
        offset, until = wait_deadline(wait) if wait else (None, None)
        subflow = node.workflow.model_dump(exclude_none=True) if node.workflow else None
        waits = wait is not None or (subflow is not None and node.map is None)
        rows.append({
            "node_key": key, "queue": node.queue or defaults.queue,
            "executor": node.executor or (WORKFLOW_EXECUTOR if subflow else WAIT_EXECUTOR),
            "status": "pending" if node.depends_on else "waiting" if waits else "queued",
            "wait_spec": wait, "wait_offset_s": offset, "wait_until": until,
            "subflow": subflow,
            "priority": run_priority + node.priority,
            "max_attempts": node.max_attempts or defaults.max_attempts,
            "timeout_s": node.timeout_s or defaults.timeout_s,
            "backoff_initial_s": backoff.initial_s, "backoff_max_s": backoff.max_s,
            "params": node.params, "depends_on": node.depends_on,
            "dependents": dependents[key],
            "condition": node.if_.model_dump(by_alias=True) if node.if_ else None,
            "map_over": node.map.model_dump() if node.map else None,
        })
    return rows


def starts_children(nodes: list[dict[str, Any]]) -> bool:
    """A new run with a root sub-workflow node starts its child in its submit."""
    return any(node["subflow"] is not None and node["status"] == "waiting" for node in nodes)


def first_events(nodes: list[dict[str, Any]], queued: dict[str, Any]) -> list[dict[str, Any]]:
    """A new run's first events: run_queued (with `queued` as its data), run_started if a
    root waits from the submit, then its queued roots and its root waits (a root wait's
    deadline is set by the insert: GET the run for it). A rerun's differ (it copies
    nodes): dagq.store.reruns."""
    started = any(node["status"] == "waiting" for node in nodes)
    return [{"type": "run_queued", "data": queued},
            *([{"type": "run_started"}] if started else []),
            *({"node_key": node["node_key"], "type": "node_queued", "attempt": 0}
              for node in nodes if node["status"] == "queued"),
            *({"node_key": node["node_key"], "type": "node_waiting", "attempt": 0,
               "data": {"wait": node["wait_spec"]}}
              for node in nodes
              if node["status"] == "waiting" and node["subflow"] is None)]


class Stale(DagqError):
    """The run named its workflow's latest version, and a newer one was registered."""

    code = "stale_workflow"


@dataclasses.dataclass(frozen=True)
class NewRun:
    """One validated submission, as the rows it becomes."""

    id: uuid.UUID
    tenant: str
    workflow: str
    workflow_version: int | None
    latest: bool  # resolved by name without a version: must still be the latest
    spec: dict[str, Any]
    fingerprint: str
    event_key: str | None
    priority: int
    fail_fast: bool
    inputs: Any
    deadline_s: float | None
    nodes: list[dict[str, Any]]
    events: list[dict[str, Any]]
    queues: frozenset[str]  # of its root nodes, woken once it is committed
    started: bool = False  # a root wait node waits from the submit: the run is running
    concurrency: Concurrency | None = None  # with concurrency_key: its limit applies
    concurrency_key: str | None = None  # `path=value` (dagq.store.concurrency)
    concurrency_waiting: bool = False  # held back for a slot: its roots stay pending
    children: bool = False  # a root sub-workflow node starts its child in the submit
    metadata: dict[str, Any] | None = None  # checked (dagq.spec.metadata); not fingerprinted
    traceparent: str | None = None  # W3C, checked (dagq.traceparent); not fingerprinted

    def row(self, i: int) -> dict[str, Any]:
        return {"i": i, "id": str(self.id), "tenant": self.tenant, "workflow": self.workflow,
                "workflow_version": self.workflow_version, "latest": self.latest,
                "spec": self.spec, "fingerprint": self.fingerprint,
                "event_key": self.event_key, "priority": self.priority,
                "fail_fast": self.fail_fast, "inputs": self.inputs,
                "nodes_total": len(self.nodes), "deadline_s": self.deadline_s,
                "nodes": self.nodes, "events": self.events, "started": self.started,
                "concurrency_key": self.concurrency_key,
                "concurrency_limit": self.concurrency.limit if self.concurrency else None,
                "concurrency_waiting": self.concurrency_waiting, "metadata": self.metadata,
                "traceparent": self.traceparent}


@dataclasses.dataclass(frozen=True)
class RunTemplate:
    """What every run of one (filled-in) spec shares: built once per workflow version."""

    name: str
    spec: dict[str, Any]
    fail_fast: bool
    nodes: list[dict[str, Any]]  # at run priority 0
    queues: frozenset[str]
    concurrency: Concurrency | None = None  # the workflow's
    root_waits: tuple[str, ...] = ()

    @classmethod
    def of(cls, spec: WorkflowSpec) -> RunTemplate:
        nodes = node_rows(spec, 0)
        # A run needs no triggers (and a release without them could not parse its spec)
        stored = {k: v for k, v in spec.canonical().items() if k != "triggers"}
        return cls(name=spec.name, spec=stored, fail_fast=spec.fail_fast,
                   nodes=nodes,
                   queues=frozenset(n["queue"] for n in nodes if n["status"] == "queued"),
                   concurrency=spec.concurrency, root_waits=tuple(spec.root_waits()))

    def new_run(self, *, tenant: str, version: int | None, latest: bool, fingerprint: str,
                event_key: str | None, priority: int, inputs: Any,
                deadline_s: float | None, concurrency: Concurrency | None = None,
                metadata: dict[str, Any] | None = None,
                run_id: uuid.UUID | None = None) -> NewRun:
        """`concurrency`: the submit's, instead of the workflow's. `metadata`: checked.
        `run_id`: chosen already (a SQL submit's request id), else a new one."""
        concurrency = concurrency or self.concurrency
        inputs = {} if inputs is None else inputs
        key = concurrency.key_of(inputs) if concurrency else None
        if key is not None and len(key.encode()) > MAX_CONCURRENCY_KEY_BYTES:
            raise InvalidRequest(f"the run's concurrency key ({key[:60]}...) is longer than "
                                 f"{MAX_CONCURRENCY_KEY_BYTES} bytes")
        if key is not None and self.root_waits:
            raise InvalidRequest("concurrency cannot be used with a root wait node "
                                 f"({', '.join(self.root_waits)}): give it a dependency")
        nodes = [{**node, "priority": node["priority"] + priority} for node in self.nodes] \
            if priority else self.nodes
        started = any(node["status"] == "waiting" for node in nodes)
        queued = {"workflow": self.name, "version": version,
                  **({"concurrency_key": key} if key is not None else {})}
        events = first_events(nodes, queued)
        return NewRun(started=started, children=starts_children(nodes),
                      id=run_id or uuid.uuid4(),
                      tenant=tenant, workflow=self.name,
                      workflow_version=version, latest=latest, spec=self.spec,
                      fingerprint=fingerprint, event_key=event_key, priority=priority,
                      fail_fast=self.fail_fast, inputs=inputs, deadline_s=deadline_s,
                      nodes=nodes, events=events, queues=self.queues,
                      concurrency=concurrency if key is not None else None,
                      concurrency_key=key, metadata=metadata)
