"""Creating a schedule and firing the due ones, exactly once each (the rules are in
dagq.spec.cron)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from dagq.errors import DagqError, InvalidRequest
from dagq.models import ScheduleRecord
from dagq.service import pauses
from dagq.service.submissions import SubmitRequest, prepare, submit
from dagq.service.workflows import resolve_workflow, with_executor_defaults
from dagq.spec.cron import cron_trigger, due_fire_time, event_key
from dagq.store import Store

log = logging.getLogger("dagq.schedules")
WHILE_PAUSED = ("queue", "skip")


def create_schedule(
    repo: Store, *, tenant: str, workflow: Any, cron: str, inputs: Any = None,
    timezone: str = "UTC", version: int | None = None, while_paused: str = "queue",
) -> ScheduleRecord:
    """`while_paused`: a firing into a pause queues its run ('queue') or is skipped."""
    if while_paused not in WHILE_PAUSED:
        raise InvalidRequest(f"while_paused must be one of {', '.join(WHILE_PAUSED)}")
    cron_trigger(cron, timezone)
    spec, _ = resolve_workflow(repo, workflow, version)
    with_executor_defaults(spec, repo)  # rejects unknown executors now, not later
    return repo.schedules.insert_schedule(
        tenant=tenant, workflow=workflow, version=version, cron=cron,
        timezone=timezone, inputs={} if inputs is None else inputs,
        while_paused=while_paused)


def delete_schedule(repo: Store, schedule_id: uuid.UUID, tenant: str | None) -> None:
    """NotFound for an unknown schedule (or another tenant's)."""
    repo.schedules.delete_schedule(schedule_id, tenant)


def fire_due(repo: Store, now: datetime | None = None) -> dict[str, int]:
    """Submit the due firing of every schedule; safe to run from several sweepers."""
    now = now or datetime.now(UTC)
    fired = errors = 0
    for schedule in repo.schedules.list_schedules(None):
        fire_at = due_fire_time(schedule, now)
        if fire_at is None:
            continue
        try:
            skipped = schedule.while_paused == "skip" and _paused_for(repo, schedule)
            if skipped:  # recorded as this firing's outcome: it is not fired again
                log.info("schedule %s skipped its firing for %s: %s", schedule.schedule_id,
                         fire_at.isoformat(), skipped)
                repo.schedules.record_firing(schedule.schedule_id, fire_at, None, skipped)
                continue
            result = submit(
                repo, tenant=schedule.tenant, workflow=schedule.workflow,
                version=schedule.version, inputs=schedule.inputs,
                event_key=event_key(schedule.schedule_id, fire_at),
            )
        except DagqError as exc:
            errors += 1
            log.warning("schedule %s could not fire for %s: %s", schedule.schedule_id,
                        fire_at.isoformat(), exc.message)
            repo.schedules.record_firing(schedule.schedule_id, fire_at, None, exc.message)
            continue
        fired += result.created
        repo.schedules.record_firing(schedule.schedule_id, fire_at, result.run_id, None)
    return {"fired": fired, "errors": errors}


def _paused_for(repo: Store, schedule: ScheduleRecord) -> str | None:
    """Why the run this schedule would submit now would be paused (None: it would not)."""
    run = prepare(repo, SubmitRequest(tenant=schedule.tenant, workflow=schedule.workflow,
                                      version=schedule.version, inputs=schedule.inputs))
    found = repo.pauses.paused_among(pauses.scopes(run))
    if not found:
        return None
    kind, name = found[0]
    return f"skipped: {kind} {name} is paused (while_paused: skip)"
