"""Cron schedules: their rows and their firings (what fires them: dagq.service.schedules
and dagq.spec.cron)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from dagq.errors import NotFound
from dagq.models import ScheduleRecord
from dagq.runtime.sqlfiles import queries
from dagq.store.tx import Database, transient


def _schedule(row: dict[str, Any]) -> ScheduleRecord:
    return ScheduleRecord(schedule_id=row["id"], **{k: v for k, v in row.items() if k != "id"})


class ScheduleRepo:
    """dagq.schedules."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @transient
    def insert_schedule(
        self, *, tenant: str, workflow: Any, version: int | None, cron: str, timezone: str,
        inputs: Any, while_paused: str = "queue",
    ) -> ScheduleRecord:
        with self.db.tx() as cur:
            row = cur.execute(queries()["insert_schedule"], {
                "id": uuid.uuid4(), "tenant": tenant, "workflow": Jsonb(workflow),
                "version": version, "cron": cron, "timezone": timezone,
                "inputs": Jsonb(inputs), "while_paused": while_paused,
            }).fetchone()
        return _schedule(row)

    @transient
    def get_schedule(self, schedule_id: uuid.UUID, tenant: str | None) -> ScheduleRecord:
        with self.db.tx() as cur:
            row = cur.execute(queries()["get_schedule"], {"id": schedule_id}).fetchone()
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise NotFound(f"schedule {schedule_id} not found")
        return _schedule(row)

    @transient
    def list_schedules(self, tenant: str | None) -> list[ScheduleRecord]:
        with self.db.tx() as cur:
            rows = cur.execute(queries()["list_schedules"], {"tenant": tenant}).fetchall()
        return [_schedule(row) for row in rows]

    @transient
    def delete_schedule(self, schedule_id: uuid.UUID, tenant: str | None) -> None:
        with self.db.tx() as cur:
            row = cur.execute(queries()["delete_schedule"],
                              {"id": schedule_id, "tenant": tenant}).fetchone()
        if row is None:
            raise NotFound(f"schedule {schedule_id} not found")

    @transient
    def record_firing(
        self, schedule_id: uuid.UUID, fire_at: datetime, run_id: uuid.UUID | None,
        error: str | None,
    ) -> None:
        with self.db.tx() as cur:
            cur.execute(queries()["record_firing"], {
                "id": schedule_id, "fire_at": fire_at, "run_id": run_id, "error": error})
