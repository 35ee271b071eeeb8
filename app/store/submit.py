"""Workflows (register, read) and submitting runs, idempotent by event key."""

from __future__ import annotations

import logging
import uuid
from typing import Any, cast

import psycopg
from psycopg.types.json import Jsonb

from dagq.errors import Conflict, InvalidRequest, NotFound
from dagq.models import (
    SubmitResult,
    WorkflowRecord,
)
from dagq.runtime.sqlfiles import queries
from dagq.spec.stored import legacy_hash, stored_hash, stored_spec
from dagq.spec.workflow import WorkflowSpec, sha256_json
from dagq.store.core import (
    QUEUED_CHANNEL,
    notify_after_commit,
    notify_event_streams,
    transient,
)
from dagq.store.rows import node_rows, starts_children
from dagq.store.transitions import Transitions

log = logging.getLogger("dagq.store")


def _record(row: dict[str, Any]) -> WorkflowRecord:
    """A workflows row with its spec as written (a row stored before 0.3.0 included)."""
    return WorkflowRecord(name=row["name"], version=row["version"],
                          spec=stored_spec(row["spec"], row["spec_hash"]),
                          created_at=row["created_at"])


class SubmitStore(Transitions):
    """Workflow registration and run submission."""

    @transient
    def register_workflow(self, spec: WorkflowSpec) -> tuple[WorkflowRecord, bool]:
        """Store the spec as the next version of its name, unless identical to one stored.
        One transaction: registrations of one name take turns on an advisory lock, so the
        next version number never collides."""
        q = queries()
        canonical, spec_hash = spec.canonical(), stored_hash(spec)
        hashes = [spec_hash, *filter(None, [legacy_hash(spec)])]
        with self._tx() as cur:
            cur.execute(q["lock_workflow_name"], {"name": spec.name})
            same = cur.execute(
                q["workflow_by_hash"], {"name": spec.name, "spec_hashes": hashes}
            ).fetchone()
            if same:
                return WorkflowRecord(name=same["name"], version=same["version"],
                                      spec=canonical), False
            row = cur.execute(q["insert_workflow_version"], {
                "name": spec.name, "spec": Jsonb(canonical), "spec_hash": spec_hash,
            }).fetchone()
        if row is None:  # only a writer that bypassed the lock could take the number
            raise Conflict(f"workflow {spec.name!r} is being registered concurrently; try again")
        return WorkflowRecord(name=row["name"], version=row["version"], spec=canonical), True

    @transient
    def get_workflow(self, name: str, version: int | None = None) -> WorkflowRecord:
        q = queries()
        with self._tx() as cur:
            if version is None:
                row = cur.execute(q["get_workflow_latest"], {"name": name}).fetchone()
            else:
                row = cur.execute(
                    q["get_workflow_version"], {"name": name, "version": version}
                ).fetchone()
        if row is None:
            suffix = f" version {version}" if version is not None else ""
            raise NotFound(f"workflow {name!r}{suffix} not found")
        return _record(row)

    @transient
    def list_workflows(self) -> list[WorkflowRecord]:
        with self._tx() as cur:
            return [_record(row) for row in cur.execute(queries()["list_workflows"])]

    def submit_run(
        self, *, tenant: str, spec: WorkflowSpec, workflow_version: int | None = None,
        inputs: Any = None, event_key: str | None = None, priority: int = 0,
        deadline_s: float | None = None, fingerprint_spec: WorkflowSpec | None = None,
        delay_s: float | None = None,
    ) -> SubmitResult:
        """Create a run with all its nodes, roots queued (available after `delay_s`: a
        Dramatiq message sent with a delay); idempotent by event key.

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
            # the group commit's path (Store has both): decided under its key's lock
            return cast(Any, self).submit_keyed(
                tenant=tenant, spec=spec, version=workflow_version, inputs=inputs,
                event_key=event_key, priority=priority, deadline_s=deadline_s,
                fingerprint=fingerprint)
        run_id = uuid.uuid4()  # chosen once, so a retried insert finds its own row
        return self._submit(run_id, tenant, spec, workflow_version, inputs, event_key,
                            priority, deadline_s, fingerprint, delay_s)

    @transient
    def _submit(
        self, run_id: uuid.UUID, tenant: str, spec: WorkflowSpec, workflow_version: int | None,
        inputs: Any, event_key: str | None, priority: int, deadline_s: float | None,
        fingerprint: str, delay_s: float | None = None,
    ) -> SubmitResult:
        nodes = node_rows(spec, priority)
        roots = [node for node in nodes if node["status"] == "queued"]
        # A root wait node waits from the submit: the run is running from then on.
        started = any(node["status"] == "waiting" for node in nodes)
        events = [{"type": "run_queued",
                   "data": {"workflow": spec.name, "version": workflow_version}},
                  *([{"type": "run_started"}] if started else []),
                  *({"node_key": node["node_key"], "type": "node_queued", "attempt": 0}
                    for node in roots),
                  # (a root wait's deadline is set by the insert: GET the run for it)
                  *({"node_key": node["node_key"], "type": "node_waiting", "attempt": 0,
                     "data": {"wait": node["wait_spec"]}}
                    for node in nodes
                    if node["status"] == "waiting" and node["subflow"] is None)]
        children = starts_children(nodes)
        with self._tx(one_statement=not children) as cur:
            row = cur.execute(queries()["submit_run"], {
                "id": run_id, "tenant": tenant, "workflow": spec.name,
                "workflow_version": workflow_version, "spec": Jsonb(spec.canonical()),
                "fingerprint": fingerprint, "event_key": event_key, "priority": priority,
                "fail_fast": spec.fail_fast, "inputs": Jsonb(inputs),
                "nodes_total": len(spec.nodes), "deadline_s": deadline_s,
                "nodes": Jsonb(nodes), "events": Jsonb(events), "started": started,
                "delay_s": delay_s,
            }).fetchone()
            if row is None:
                return self._existing_run(cur, run_id, tenant, event_key, fingerprint)
            if children:
                self._start_new_children(cur, [run_id])
            notify_event_streams([run_id])
            for queue in sorted({node["queue"] for node in roots}):
                notify_after_commit(QUEUED_CHANNEL, queue)
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
