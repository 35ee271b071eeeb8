"""/v1/workflows: register (admin keys only), list, read one."""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dagq import service
from dagq.api.auth import admin, principal
from dagq.api.bodies import read_json, read_query
from dagq.api.schemas import WorkflowList, WorkflowRef, WorkflowVersionQuery
from dagq.errors import NotFound
from dagq.spec.workflow import KEY_PATTERN

_NAME = re.compile(KEY_PATTERN)


async def register_workflow(request: Request) -> JSONResponse:
    await admin(request)
    spec = await read_json(request)
    record, created = await run_in_threadpool(service.register_workflow,
                                              request.app.state.repo, spec)
    body = WorkflowRef(name=record.name, version=record.version).model_dump(mode="json")
    return JSONResponse(body, status_code=201 if created else 200)


async def list_workflows(request: Request) -> JSONResponse:
    await principal(request)
    records = await run_in_threadpool(request.app.state.repo.workflows.list_workflows)
    out = WorkflowList(workflows=records)
    return JSONResponse(out.model_dump(mode="json"))


async def get_workflow(request: Request) -> JSONResponse:
    await principal(request)
    name = request.path_params["name"]
    query = read_query(request, WorkflowVersionQuery)
    if not _NAME.fullmatch(name):
        raise NotFound(f"workflow {name[:100]!r} not found")
    record = await run_in_threadpool(request.app.state.repo.workflows.get_workflow, name,
                                     query.version)
    return JSONResponse(record.model_dump(mode="json"))


routes = [
    Route("/v1/workflows", register_workflow, methods=["POST"]),
    Route("/v1/workflows", list_workflows, methods=["GET"]),
    Route("/v1/workflows/{name}", get_workflow, methods=["GET"]),
]
