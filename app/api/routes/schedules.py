"""/v1/schedules: cron schedules whose firings the sweeper submits (once per firing)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dagq import service
from dagq.api.auth import principal, tenant_scope
from dagq.api.bodies import path_uuid, read_model
from dagq.api.schemas import VERSION_NEEDS_NAME, InlineSpec, WorkflowName
from dagq.models import ScheduleRecord

# Five fields separated by spaces (what the schema can say; the fields' values are
# checked by dagq.spec.cron.cron_trigger).
CRON_PATTERN = r"^ *[^ ]+( +[^ ]+){4} *$"


class CreateScheduleBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra=VERSION_NEEDS_NAME)

    workflow: WorkflowName | InlineSpec = Field(
        description="a registered workflow name, or an inline workflow spec")
    cron: str = Field(min_length=9, max_length=200, pattern=CRON_PATTERN,
                      description="5-field crontab: minute hour day month weekday")
    inputs: Any = Field(None, description="inputs of every run it submits")
    timezone: str = Field("UTC", min_length=1, max_length=64, description="IANA zone name")
    version: int | None = Field(None, ge=1, le=2_147_483_647)
    while_paused: Literal["queue", "skip"] = Field(
        "queue", description="a firing while its run would be paused (docs/flow-control.md): "
                             "submit it to wait in the pause, or skip the firing")


class ScheduleCreated(BaseModel):
    schedule_id: uuid.UUID


class ScheduleList(BaseModel):
    schedules: list[ScheduleRecord]


def schedule_id_of(request: Request) -> uuid.UUID:
    return path_uuid(request, "schedule_id", "schedule")


async def create_schedule(request: Request) -> JSONResponse:
    key = await principal(request)
    body = await read_model(request, CreateScheduleBody)
    record = await run_in_threadpool(
        service.create_schedule, request.app.state.repo, tenant=key.tenant,
        workflow=body.workflow, cron=body.cron, inputs=body.inputs, timezone=body.timezone,
        version=body.version, while_paused=body.while_paused,
    )
    return JSONResponse(ScheduleCreated(schedule_id=record.schedule_id).model_dump(mode="json"),
                        status_code=201)


async def list_schedules(request: Request) -> JSONResponse:
    key = await principal(request)
    found = await run_in_threadpool(request.app.state.repo.schedules.list_schedules,
                                    tenant_scope(key))
    return JSONResponse(ScheduleList(schedules=found)
                        .model_dump(mode="json"))


async def get_schedule(request: Request) -> JSONResponse:
    key = await principal(request)
    record = await run_in_threadpool(request.app.state.repo.schedules.get_schedule,
                                     schedule_id_of(request), tenant_scope(key))
    return JSONResponse(record.model_dump(mode="json"))


async def delete_schedule(request: Request) -> Response:
    key = await principal(request)
    await run_in_threadpool(service.delete_schedule, request.app.state.repo,
                            schedule_id_of(request), tenant_scope(key))
    return Response(status_code=204)


routes = [
    Route("/v1/schedules", create_schedule, methods=["POST"]),
    Route("/v1/schedules", list_schedules, methods=["GET"]),
    Route("/v1/schedules/{schedule_id}", get_schedule, methods=["GET"]),
    Route("/v1/schedules/{schedule_id}", delete_schedule, methods=["DELETE"]),
]
