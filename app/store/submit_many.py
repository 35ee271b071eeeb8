"""Submitting many runs in one statement: the API's group commit of concurrent
submissions, and POST /v1/runs/batch.

Each run is validated and turned into rows before it gets here (`NewRun`); one
statement writes every run that is new (autocommit: committed when it returns), a
second reads the runs that hold the event keys of the others. A run whose data Postgres
refuses is isolated by bisection and fails alone; an event key taken by another
submission, or by a run of this same batch, answers as `POST /v1/runs` does.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from dagq.errors import Conflict, DagqError, InvalidRequest, QuotaExceeded, RateLimited
from dagq.models import SubmitResult
from dagq.runtime.sqlfiles import queries
from dagq.spec.workflow import MAX_CONCURRENCY_KEY_BYTES, Concurrency, WorkflowSpec
from dagq.store.concurrency import Slots
from dagq.store.core import (
    QUEUED_CHANNEL,
    notify_after_commit,
    notify_event_streams,
    transient,
)
from dagq.store.rows import node_rows, starts_children
from dagq.store.transitions import Transitions

# What a row's data can make the statement (or the driver) refuse, every time it runs.
BAD_DATA = (psycopg.DataError, TypeError, ValueError, RecursionError)
NOTIFY_RUNS_AT_ONCE = 100  # an event-stream wake-up names at most this many runs


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
                "concurrency_waiting": self.concurrency_waiting}


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
        return cls(name=spec.name, spec=spec.canonical(), fail_fast=spec.fail_fast,
                   nodes=nodes,
                   queues=frozenset(n["queue"] for n in nodes if n["status"] == "queued"),
                   concurrency=spec.concurrency, root_waits=tuple(spec.root_waits()))

    def new_run(self, *, tenant: str, version: int | None, latest: bool, fingerprint: str,
                event_key: str | None, priority: int, inputs: Any,
                deadline_s: float | None, concurrency: Concurrency | None = None) -> NewRun:
        """`concurrency`: the submit's, instead of the workflow's."""
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
        events = [{"type": "run_queued", "data": queued},
                  *([{"type": "run_started"}] if started else []),
                  *({"node_key": node["node_key"], "type": "node_queued", "attempt": 0}
                    for node in nodes if node["status"] == "queued"),
                  # (a root wait's deadline is set by the insert: GET the run for it)
                  *({"node_key": node["node_key"], "type": "node_waiting", "attempt": 0,
                     "data": {"wait": node["wait_spec"]}}
                    for node in nodes
                    if node["status"] == "waiting" and node["subflow"] is None)]
        return NewRun(started=started, children=starts_children(nodes), id=uuid.uuid4(),
                      tenant=tenant, workflow=self.name,
                      workflow_version=version, latest=latest, spec=self.spec,
                      fingerprint=fingerprint, event_key=event_key, priority=priority,
                      fail_fast=self.fail_fast, inputs=inputs, deadline_s=deadline_s,
                      nodes=nodes, events=events, queues=self.queues,
                      concurrency=concurrency if key is not None else None,
                      concurrency_key=key)


Outcome = SubmitResult | DagqError


class SubmitManyStore(Transitions):
    """Many submissions, one write."""

    def submit_runs(self, runs: list[NewRun],
                    limited: frozenset[str] = frozenset()) -> list[Outcome]:
        """Each run's result, in order: created (committed), the existing run of its
        event key, or its own error (Conflict, InvalidRequest, Stale, or the 429 of a
        tenant in `limited` over its quotas)."""
        if not runs:
            return []
        try:
            return self._submit_runs(runs, limited)
        except BAD_DATA as exc:
            if len(runs) == 1:
                return [InvalidRequest("a value in the request is not storable",
                                       {"reason": _reason(exc)})]
            half = len(runs) // 2
            return (self.submit_runs(runs[:half], limited)
                    + self.submit_runs(runs[half:], limited))

    def submit_keyed(self, *, tenant: str, spec: WorkflowSpec, version: int | None,
                     inputs: Any, event_key: str | None, priority: int,
                     deadline_s: float | None, fingerprint: str) -> SubmitResult:
        """One run whose workflow has a concurrency key (the store's single submit)."""
        run = RunTemplate.of(spec).new_run(
            tenant=tenant, version=version, latest=False, fingerprint=fingerprint,
            event_key=event_key, priority=priority, inputs=inputs, deadline_s=deadline_s)
        outcome = self.submit_runs([run])[0]
        if isinstance(outcome, DagqError):
            raise outcome
        return outcome

    @transient
    def _submit_runs(self, runs: list[NewRun], limited: frozenset[str]) -> list[Outcome]:
        """One statement in autocommit; with quota-limited tenants, one transaction that
        admits them first and holds their tenant rows locked until the runs are committed
        (so concurrent groups cannot both fill the same room)."""
        q = queries()
        outcomes: list[Outcome | None] = [None] * len(runs)
        asked = Counter(run.tenant for run in runs if run.tenant in limited)
        keyed = any(run.concurrency_key is not None for run in runs)
        children = any(run.children for run in runs)
        with self._tx(one_statement=not asked and not keyed and not children) as cur:
            if asked:
                outcomes = list(_admit(cur, runs, asked))
            slots = Slots.take(cur, runs, outcomes, self._cancelled_run_finished) \
                if keyed else None
            runs = slots.runs if slots else runs
            payload = Jsonb([run.row(i) for i, run in enumerate(runs) if outcomes[i] is None])
            rows = cur.execute(q["submit_runs"], {"runs": payload}).fetchall()
            created = [runs[row["i"]] for row in rows if row["created"]]
            if children:
                self._start_new_children(cur, [run.id for run in created if run.children])
            for row in rows:
                if row["stale"]:
                    outcomes[row["i"]] = Stale("a newer version of the workflow exists")
                elif row["created"]:
                    run = runs[row["i"]]
                    outcomes[row["i"]] = SubmitResult(
                        run_id=run.id, status="running" if run.started else "queued",
                        created=True)
            if slots:
                for i in slots.cancel_refused(cur, {i for i, o in enumerate(outcomes)
                                                    if isinstance(o, SubmitResult)}):
                    outcomes[i] = SubmitResult(run_id=runs[i].id, status="cancelled",
                                               created=True)
            self._wake(created)
        written = {row["i"] for row in rows}
        taken = [i for i, outcome in enumerate(outcomes) if outcome is None and i in written]
        if taken:
            self._resolve_taken(runs, taken, outcomes)
        return [outcome if outcome is not None else
                Conflict("the run for this event key was removed while submitting; retry")
                for outcome in outcomes]

    @staticmethod
    def _wake(created: list[NewRun]) -> None:
        """After the commit: the new runs' event streams, the queues of their roots."""
        for start in range(0, len(created), NOTIFY_RUNS_AT_ONCE):
            notify_event_streams(run.id for run in created[start:start + NOTIFY_RUNS_AT_ONCE])
        for queue in sorted(set().union(*(run.queues for run in created))):
            notify_after_commit(QUEUED_CHANNEL, queue)

    def _resolve_taken(self, runs: list[NewRun], taken: list[int],
                       outcomes: list[Outcome | None]) -> None:
        """The runs that hold these submissions' keys (committed: this reads after the
        write's commit, and after any concurrent writer of the same key committed)."""
        with self._tx(one_statement=True) as cur:
            rows = cur.execute(queries()["runs_taken"], {
                "i": taken, "ids": [runs[i].id for i in taken],
                "tenants": [runs[i].tenant for i in taken],
                "event_keys": [runs[i].event_key for i in taken],
            }).fetchall()
        for row in rows:
            run = runs[row["i"]]
            if row["fingerprint"] != run.fingerprint:
                outcomes[row["i"]] = Conflict(
                    f"event key {run.event_key!r} was already used for a different workflow "
                    "or inputs", {"run_id": str(row["id"])})
            else:  # its own row (a retried write) is the one it created
                outcomes[row["i"]] = SubmitResult(run_id=row["id"], status=row["status"],
                                                  created=row["id"] == run.id)


def _admit(cur: psycopg.Cursor[Any], runs: list[NewRun],
           asked: Counter[str]) -> list[Outcome | None]:
    """Per run: None if its tenant's quotas let it in (in submission order), else its 429
    (QuotaExceeded or RateLimited, with retry_after)."""
    tenants = sorted(asked)
    cur.execute(queries()["lock_tenants"], {"tenants": tenants})
    rows = cur.execute(queries()["admit_runs"], {
        "tenants": tenants, "asked": [asked[t] for t in tenants]}).fetchall()
    verdicts = {row["tenant"]: row for row in rows}
    left = {tenant: verdict["admitted"] for tenant, verdict in verdicts.items()}
    refusals: list[Outcome | None] = []
    for run in runs:
        if run.tenant not in left:
            refusals.append(None)
        elif left[run.tenant] > 0:
            left[run.tenant] -= 1
            refusals.append(None)
        else:
            refusals.append(_refusal(run.tenant, verdicts[run.tenant]))
    return refusals


def _refusal(tenant: str, verdict: dict[str, Any]) -> RateLimited:
    retry = verdict["retry_after_s"] or 1
    details = {"tenant": tenant, "retry_after_s": retry}
    error: RateLimited
    if verdict["refused_by"] == "quota_exceeded":
        error = QuotaExceeded(f"tenant {tenant!r} has as many queued runs as its "
                              "max_queued_runs allows; retry once some have started", details)
    else:
        error = RateLimited(f"tenant {tenant!r} is over its submit rate; retry in {retry}s",
                            details)
    error.retry_after = retry
    return error


def _reason(exc: Exception) -> str:
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    return f"{type(exc).__name__}: {exc}"
