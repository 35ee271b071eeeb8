"""Submitting runs: one (`submit_run`, idempotent by event key), or many in one
statement (`submit_runs`: the API's group commit of concurrent submissions, and
POST /v1/runs/batch).

Each of many runs is validated and turned into rows before it gets here (`NewRun`); one
statement writes every run that is new (autocommit: committed when it returns), a
second reads the runs that hold the event keys of the others. A run whose data Postgres
refuses is isolated by bisection and fails alone; an event key taken by another
submission, or by a run of this same batch, answers as `POST /v1/runs` does.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from dagq.errors import Conflict, DagqError, InvalidRequest
from dagq.models import SubmitResult
from dagq.runtime.sqlfiles import queries
from dagq.spec.workflow import WorkflowSpec, sha256_json
from dagq.store.machine import Machine
from dagq.store.machine.admission import finished
from dagq.store.machine.unit import run_created
from dagq.store.new_runs import NewRun, RunTemplate, first_events, node_rows, starts_children
from dagq.store.tx import (
    BAD_DATA,
    Database,
    reason,
    transient,
)

Outcome = SubmitResult | DagqError


class SubmissionRepo:
    """Run submission: one run, or many in one write."""

    def __init__(self, db: Database, machine: Machine) -> None:
        self.db, self.m = db, machine

    def submit_run(
        self, *, tenant: str, spec: WorkflowSpec, workflow_version: int | None = None,
        inputs: Any = None, event_key: str | None = None, priority: int = 0,
        deadline_s: float | None = None, fingerprint_spec: WorkflowSpec | None = None,
        delay_s: float | None = None, traceparent: str | None = None,
    ) -> SubmitResult:
        """Create a run with all its nodes, roots queued (available after `delay_s`: a
        Dramatiq message sent with a delay); idempotent by event key. `traceparent`:
        the W3C trace the run joins (checked by the caller).

        The idempotency fingerprint covers the workflow as submitted (`fingerprint_spec`,
        before executor defaults were filled in) and the inputs.
        """
        inputs = {} if inputs is None else inputs
        as_submitted = fingerprint_spec or spec
        fingerprint = sha256_json(
            {"workflow": as_submitted.name, "spec": as_submitted.spec_hash(), "inputs": inputs}
        )
        if spec.concurrency is not None and spec.concurrency.key_of(inputs) is not None:
            if delay_s is not None:
                raise InvalidRequest("a run with a concurrency key cannot be delayed")
            # the group commit's path: decided under its key's lock
            return self.submit_keyed(
                tenant=tenant, spec=spec, version=workflow_version, inputs=inputs,
                event_key=event_key, priority=priority, deadline_s=deadline_s,
                fingerprint=fingerprint, traceparent=traceparent)
        run_id = uuid.uuid4()  # chosen once, so a retried insert finds its own row
        return self._submit(run_id, tenant, spec, workflow_version, inputs, event_key,
                            priority, deadline_s, fingerprint, delay_s, traceparent)

    @transient
    def _submit(
        self, run_id: uuid.UUID, tenant: str, spec: WorkflowSpec, workflow_version: int | None,
        inputs: Any, event_key: str | None, priority: int, deadline_s: float | None,
        fingerprint: str, delay_s: float | None = None, traceparent: str | None = None,
    ) -> SubmitResult:
        nodes = node_rows(spec, priority)
        # A root wait node waits from the submit: the run is running from then on.
        started = any(node["status"] == "waiting" for node in nodes)
        events = first_events(nodes, {"workflow": spec.name, "version": workflow_version})
        children = starts_children(nodes)
        with self.db.tx(one_statement=not children) as cur:
            row = cur.execute(queries()["submit_run"], {
                "id": run_id, "tenant": tenant, "workflow": spec.name,
                "workflow_version": workflow_version, "spec": Jsonb(spec.canonical()),
                "fingerprint": fingerprint, "event_key": event_key, "priority": priority,
                "fail_fast": spec.fail_fast, "inputs": Jsonb(inputs),
                "nodes_total": len(spec.nodes), "deadline_s": deadline_s,
                "nodes": Jsonb(nodes), "events": Jsonb(events), "started": started,
                "delay_s": delay_s, "traceparent": traceparent,
            }).fetchone()
            if row is None:
                return self._existing_run(cur, run_id, tenant, event_key, fingerprint)
            if children:
                self.m.accounting.start_new_children(cur, [run_id])
            run_created(run_id, (node["queue"] for node in nodes if node["status"] == "queued"))
        return SubmitResult(run_id=run_id, status="running" if started else "queued",
                            created=True)

    def _existing_run(
        self, cur: psycopg.Cursor[Any], run_id: uuid.UUID, tenant: str, event_key: str | None,
        fingerprint: str,
    ) -> SubmitResult:
        q = queries()
        if event_key is not None:
            row = cur.execute(q["run_by_event_key"],
                              {"tenant": tenant, "event_key": event_key}).fetchone()
        else:
            row = cur.execute(q["run_by_id_for_submit"], {"id": run_id}).fetchone()
        if row is None:
            raise Conflict("the run for this event key was removed while submitting; retry")
        if row["fingerprint"] != fingerprint:
            raise Conflict(
                f"event key {event_key!r} was already used for a different workflow or inputs",
                {"run_id": str(row["id"])},
            )
        return SubmitResult(run_id=row["id"], status=row["status"], created=False)

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
                                       {"reason": reason(exc)})]
            half = len(runs) // 2
            return (self.submit_runs(runs[:half], limited)
                    + self.submit_runs(runs[half:], limited))

    def submit_keyed(self, *, tenant: str, spec: WorkflowSpec, version: int | None,
                     inputs: Any, event_key: str | None, priority: int,
                     deadline_s: float | None, fingerprint: str,
                     traceparent: str | None = None) -> SubmitResult:
        """One run whose workflow has a concurrency key (the store's single submit)."""
        run = dataclasses.replace(RunTemplate.of(spec).new_run(
            tenant=tenant, version=version, latest=False, fingerprint=fingerprint,
            event_key=event_key, priority=priority, inputs=inputs, deadline_s=deadline_s),
            traceparent=traceparent)
        outcome = self.submit_runs([run])[0]
        if isinstance(outcome, DagqError):
            raise outcome
        return outcome

    @transient
    def _submit_runs(self, runs: list[NewRun], limited: frozenset[str]) -> list[Outcome]:
        """One statement in autocommit; with quota-limited tenants, one transaction that
        admits them first and holds their tenant rows locked until the runs are committed
        (so concurrent groups cannot both fill the same room)."""
        asked = any(run.tenant in limited for run in runs)
        keyed = any(run.concurrency_key is not None for run in runs)
        children = any(run.children for run in runs)
        with self.db.tx(one_statement=not asked and not keyed and not children) as cur:
            runs, outcomes, taken = self.m.admission.write_runs(cur, runs, limited)
        if taken:  # read after the commit (and a concurrent writer's of the same key)
            with self.db.tx(one_statement=True) as cur:
                self.m.admission.resolve_taken(cur, runs, taken, outcomes)
        return finished(outcomes)
