"""/v1/runs: submit, read, list, cancel, retry, signal. Each route parses, authorises and calls one
service or repository function."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dagq import service
from dagq.api.auth import principal, tenant_scope
from dagq.api.bodies import path_uuid, read_model, read_query
from dagq.api.schemas import (
    ListRunsQuery,
    RunAction,
    RunList,
    RunSummary,
    SignalBody,
    SubmitRunBody,
    decode_cursor,
    encode_cursor,
)
from dagq.errors import Conflict, DagqError


def run_id_of(request: Request) -> uuid.UUID:
    """The {run_id} path parameter; anything that is not a UUID is an unknown run."""
    return path_uuid(request, "run_id", "run")


def _json(model: BaseModel, status: int = 200) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"), status_code=status)


async def submit_run(request: Request) -> JSONResponse:
    key = await principal(request)
    metrics = request.app.state.metrics
    try:
        body = await read_model(request, SubmitRunBody)
        result = await run_in_threadpool(
            service.submit, request.app.state.repo, tenant=key.tenant,
            workflow=body.workflow, version=body.version, inputs=body.inputs,
            event_key=body.event_key, priority=body.priority, deadline_s=body.deadline_s,
        )
    except Conflict:
        metrics.submissions.labels("conflict").inc()
        raise
    except DagqError:
        metrics.submissions.labels("rejected").inc()
        raise
    metrics.submissions.labels("created" if result.created else "existing").inc()
    return _json(result, 201 if result.created else 200)


async def get_run(request: Request) -> JSONResponse:
    key = await principal(request)
    run = await run_in_threadpool(service.get_run, request.app.state.repo, run_id_of(request),
                                  tenant_scope(key))
    return _json(run)


async def list_runs(request: Request) -> JSONResponse:
    key = await principal(request)
    query = read_query(request, ListRunsQuery)
    tenant = tenant_scope(key) if tenant_scope(key) is not None else query.tenant
    cursor = decode_cursor(query.cursor) if query.cursor else None
    runs = await run_in_threadpool(
        request.app.state.repo.list_runs, tenant=tenant, status=query.status,
        workflow=query.workflow, limit=query.limit + 1, cursor=cursor,
    )
    page = runs[:query.limit]
    next_cursor = None
    if len(runs) > query.limit:
        last = page[-1]
        next_cursor = encode_cursor(last.created_at, last.run_id)
    return _json(RunList(runs=[RunSummary.of(r) for r in page], next_cursor=next_cursor))


async def _run_action(request: Request, action: Callable[..., str]) -> JSONResponse:
    """Cancel or retry: 202 with the run's new status."""
    key = await principal(request)
    run_id = run_id_of(request)
    status = await run_in_threadpool(action, run_id, tenant_scope(key))
    return _json(RunAction(run_id=run_id, status=status), 202)


async def send_signal(request: Request) -> JSONResponse:
    """202 when stored (delivered or buffered); 200 for a signal_id sent before."""
    key = await principal(request)
    run_id = run_id_of(request)
    # No body (or an empty one) is a signal without data.
    body = await read_model(request, SignalBody) if (await request.body()).strip() \
        else SignalBody()
    result = await run_in_threadpool(
        service.send_signal, request.app.state.repo, run_id, request.path_params["name"],
        tenant=tenant_scope(key), data=body.data, signal_id=body.signal_id)
    return _json(result, 200 if result.duplicate else 202)


async def cancel_run(request: Request) -> JSONResponse:
    return await _run_action(request, request.app.state.repo.cancel_run)


async def retry_run(request: Request) -> JSONResponse:
    return await _run_action(request, request.app.state.repo.retry_run)


routes = [
    Route("/v1/runs", submit_run, methods=["POST"]),
    Route("/v1/runs", list_runs, methods=["GET"]),
    Route("/v1/runs/{run_id}", get_run, methods=["GET"]),
    Route("/v1/runs/{run_id}/cancel", cancel_run, methods=["POST"]),
    Route("/v1/runs/{run_id}/retry", retry_run, methods=["POST"]),
    Route("/v1/runs/{run_id}/signals/{name}", send_signal, methods=["POST"]),
]
