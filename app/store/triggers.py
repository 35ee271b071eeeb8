"""Event triggers (migration 032): the workflows an event starts, and the event stored
with the runs it started, in one transaction (`emit`); an event read back (`get_event`).
Which runs and their rows are decided by dagq.service.triggers before the write."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from dagq.errors import Conflict, DagqError, NotFound
from dagq.models import EventRecord, EventRun, SubmitResult
from dagq.runtime.sqlfiles import queries
from dagq.store.machine import Machine
from dagq.store.new_runs import NewRun
from dagq.store.tx import Database, transient


class TriggerRepo:
    """dagq.events and dagq.event_runs; the runs go through the machine's admission."""

    def __init__(self, db: Database, machine: Machine) -> None:
        self.db, self.m = db, machine

    @transient
    def subscribed(self, name: str, payload: Any) -> list[tuple[str, int]]:
        """(workflow, latest version) of every workflow this event starts, by name."""
        with self.db.tx(one_statement=True) as cur:
            rows = cur.execute(queries()["subscribed_workflows"], {
                "name": name, "event": Jsonb({"name": name, "payload": payload})}).fetchall()
        return [(row["name"], row["version"]) for row in rows]

    @transient
    def write_event(self, *, tenant: str, event_id: str | None, name: str, payload: Any,
                    fingerprint: str, runs: list[NewRun],
                    limited: frozenset[str] = frozenset()) -> EventRecord:
        """Store the event and write `runs` in one transaction; any run refused (a 429
        of the tenant's quotas, a conflict) rolls everything back and is raised. The
        same (tenant, event_id) again: the first event's record (created False), or a
        Conflict if its name or payload differ. `limited`: the tenants with quotas."""
        new_id = uuid.uuid4()
        with self.db.tx() as cur:
            row = cur.execute(queries()["insert_event"], {
                "id": new_id, "tenant": tenant, "event_id": event_id or str(new_id),
                "name": name, "payload": Jsonb(payload), "fingerprint": fingerprint,
            }).fetchone()
            if row is None:
                return self._repeat(cur, tenant, event_id or str(new_id), fingerprint)
            outcomes = self.m.admission.write_resolved(cur, runs, limited) if runs else []
            for outcome in outcomes:
                if isinstance(outcome, DagqError):
                    raise outcome  # rolls back the event and every run
            started = [EventRun(workflow=run.workflow, version=run.workflow_version,
                                run_id=outcome.run_id, status=outcome.status)
                       for run, outcome in zip(runs, outcomes, strict=True)
                       if isinstance(outcome, SubmitResult)]
            cur.execute(queries()["insert_event_runs"], {"event": new_id, "runs": Jsonb([
                {"workflow": r.workflow, "workflow_version": r.version,
                 "run_id": str(r.run_id)} for r in started])})
        return EventRecord(**_event(row), runs=started, created=True)

    @transient
    def existing_event(self, tenant: str, event_id: str,
                       fingerprint: str) -> EventRecord | None:
        """The event already stored with (tenant, event_id), as a repeat is answered
        (Conflict: another name or payload), or None."""
        with self.db.tx() as cur:
            row = cur.execute(queries()["event_by_event_id"],
                              {"tenant": tenant, "event_id": event_id}).fetchone()
            return None if row is None else self._answer(cur, row, event_id, fingerprint)

    def _repeat(self, cur: psycopg.Cursor[Any], tenant: str, event_id: str,
                fingerprint: str) -> EventRecord:
        row = cur.execute(queries()["event_by_event_id"],
                          {"tenant": tenant, "event_id": event_id}).fetchone()
        if row is None:  # pragma: no cover - events are never deleted before their runs
            raise Conflict("the event with this event_id was removed while emitting; retry")
        return self._answer(cur, row, event_id, fingerprint)

    def _answer(self, cur: psycopg.Cursor[Any], row: dict[str, Any], event_id: str,
                fingerprint: str) -> EventRecord:
        if row["fingerprint"] != fingerprint:
            raise Conflict(f"event_id {event_id!r} was already used for a different event "
                           "name or payload", {"event": str(row["id"])})
        return EventRecord(**_event(row), runs=self._runs(cur, row["id"]), created=False)

    @transient
    def get_event(self, event: str, tenant: str | None) -> EventRecord:
        """By id, or by the client's event_id in `tenant`; another tenant's is not found."""
        with self.db.tx() as cur:
            row = cur.execute(queries()["event_by_id"], {
                "id": event, "id_uuid": _as_uuid(event), "tenant": tenant}).fetchone()
            if row is None:
                raise NotFound(f"event {event} not found")
            return EventRecord(**_event(row), runs=self._runs(cur, row["id"]), created=False)

    @transient
    def prune_events(self, *, before: datetime) -> int:
        """Events from before `before` whose runs were all pruned; how many."""
        with self.db.tx(one_statement=True) as cur:
            return cur.execute(queries()["prune_events"], {"before": before}
                               ).fetchone()["pruned"]

    @staticmethod
    def _runs(cur: psycopg.Cursor[Any], event: uuid.UUID) -> list[EventRun]:
        return [EventRun(**row) for row in
                cur.execute(queries()["event_runs"], {"event": event}).fetchall()]


def _as_uuid(text: str) -> uuid.UUID | None:
    """`text` as dagq's event id when it is one as dagq writes it (lowercase, dashed:
    what `id::text` equalled), else None (then only an event_id can match it)."""
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        return None
    return parsed if str(parsed) == text else None


def _event(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "fingerprint"}
