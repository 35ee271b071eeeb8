"""What the dashboard needs beyond the runs API: GET /v1/workers (dagq.worker_status),
for admin keys."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dagq.api.auth import admin
from dagq.api.bodies import read_query

MAX_WORKERS_PAGE = 500


class WorkersQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["alive", "stopped", "dead"] | None = None
    limit: int = Field(100, ge=1, le=MAX_WORKERS_PAGE)


class WorkerOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    status: Literal["alive", "stopped", "dead"]
    hostname: str
    pid: int
    queues: list[str]
    threads: int
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_s: float = Field(description="seconds since the last heartbeat")
    running: int = Field(description="node tasks this worker holds a lease on")
    expired_leases: int = Field(description="of those, leases that expired")
    stopped_at: datetime | None


class WorkerList(BaseModel):
    model_config = ConfigDict(frozen=True)

    workers: list[WorkerOut]


async def workers(request: Request) -> JSONResponse:
    """Admin keys only: hostnames and pids say where the fleet runs, and the workers serve
    every tenant."""
    await admin(request)
    query = read_query(request, WorkersQuery)
    rows = await run_in_threadpool(request.app.state.repo.fleet.list_workers, status=query.status,
                                   limit=query.limit)
    out = WorkerList(workers=[WorkerOut.model_validate(row) for row in rows])
    return JSONResponse(out.model_dump(mode="json"))


routes = [Route("/v1/workers", workers, methods=["GET"])]
