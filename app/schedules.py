"""Cron schedules: validation, which firing is due, and firing it exactly once.

Policy for missed firings (the sweeper was down): on catch-up a schedule fires ONCE, for
the latest fire time that passed; the older missed firings are skipped. Each firing
submits with `event_key = "schedule:<id>:<fire time, UTC ISO 8601>"`, so two sweepers, a
restart or a retried firing cannot start the same firing twice.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from dagq import service
from dagq.errors import DagqError, InvalidRequest
from dagq.models import ScheduleRecord
from dagq.store import Store

log = logging.getLogger("dagq.schedules")

MAX_STEPS = 1_000_000  # fire times walked when catching up (a year of every-minute)


def cron_trigger(cron: str, timezone: str) -> CronTrigger:
    """Parse a 5-field crontab expression; clear 422-style errors otherwise."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(f"unknown timezone {timezone!r} (use an IANA name such as "
                             "'Europe/Paris' or 'UTC')") from None
    if not isinstance(cron, str) or len(cron.split()) != 5:
        raise InvalidRequest(f"cron must have 5 fields (minute hour day month weekday), "
                             f"got {cron!r}")
    try:
        return CronTrigger.from_crontab(cron, timezone=zone)
    except ValueError as exc:
        raise InvalidRequest(f"invalid cron expression {cron!r}: {exc}") from None


def create_schedule(
    repo: Store, *, tenant: str, workflow: Any, cron: str, inputs: Any = None,
    timezone: str = "UTC", version: int | None = None,
) -> ScheduleRecord:
    cron_trigger(cron, timezone)
    spec, _ = service.resolve_workflow(repo, workflow, version)
    service.with_executor_defaults(spec, repo)  # rejects unknown executors now, not later
    return repo.insert_schedule(tenant=tenant, workflow=workflow, version=version, cron=cron,
                                timezone=timezone, inputs={} if inputs is None else inputs)


def due_fire_time(schedule: ScheduleRecord, now: datetime) -> datetime | None:
    """The latest fire time after the last firing (or creation) and at or before now."""
    trigger = cron_trigger(schedule.cron, schedule.timezone)
    after = schedule.last_fire_at or schedule.created_at
    due = None
    candidate = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    for _ in range(MAX_STEPS):
        if candidate is None or candidate > now:
            break
        due = candidate
        candidate = trigger.get_next_fire_time(candidate, candidate + timedelta(seconds=1))
    return due


def event_key(schedule_id: uuid.UUID, fire_at: datetime) -> str:
    return f"schedule:{schedule_id}:{fire_at.astimezone(UTC).isoformat()}"


def fire_due(repo: Store, now: datetime | None = None) -> dict[str, int]:
    """Submit the due firing of every schedule; safe to run from several sweepers."""
    now = now or datetime.now(UTC)
    fired = errors = 0
    for schedule in repo.list_schedules(None):
        fire_at = due_fire_time(schedule, now)
        if fire_at is None:
            continue
        try:
            result = service.submit(
                repo, tenant=schedule.tenant, workflow=schedule.workflow,
                version=schedule.version, inputs=schedule.inputs,
                event_key=event_key(schedule.schedule_id, fire_at),
            )
        except DagqError as exc:
            errors += 1
            log.warning("schedule %s could not fire for %s: %s", schedule.schedule_id,
                        fire_at.isoformat(), exc.message)
            repo.record_firing(schedule.schedule_id, fire_at, None, exc.message)
            continue
        fired += result.created
        repo.record_firing(schedule.schedule_id, fire_at, result.run_id, None)
    return {"fired": fired, "errors": errors}
