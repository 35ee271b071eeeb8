"""Cron schedules: validating an expression and which firing is due (pure; firing is
dagq.service.schedules).

Policy for missed firings (the sweeper was down): on catch-up a schedule fires ONCE, for
the latest fire time that passed; the older missed firings are skipped. Each firing
submits with `event_key = "schedule:<id>:<fire time, UTC ISO 8601>"`, so two sweepers, a
restart or a retried firing cannot start the same firing twice.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from dagq.errors import InvalidRequest
from dagq.models import ScheduleRecord

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
