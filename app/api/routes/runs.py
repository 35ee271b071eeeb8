"""/v1/runs: submit (one, or a batch), read, list, cancel, retry, rerun, resolve a node,
signal. Each route
parses, authorises and calls one service function (a read may call the repository);
submissions are written by the group commit (dagq.api.submits)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dagq import service
from dagq.api.auth import principal, tenant_scope
from dagq.api.bodies import path_uuid, read_model, read_query, validate
from dagq.api.errors import error_body
from dagq.api.schemas import (
    ListRunsQuery,
    RerunBody,
    ResolveBody,
    RetryBody,
    RunAction,
    RunList,
    RunSummary,
    SignalBody,
    SubmitBatchBody,
    decode_cursor,
    encode_cursor,
    meta_filters,
    parse_time,
)
from dagq.api.schemas_cost import SubmitRunBody  # schemas' with `budget`
from dagq.api.tracing import SubmitTrace, submit_trace
from dagq.errors import Conflict, DagqError, InvalidRequest
from dagq.models import ApiKey, SubmitResult
from dagq.service import webhooks as hooks
from dagq.service.submissions import SubmitRequest, cached_run
from dagq.store.tx import call_by


def run_id_of(request: Request) -> uuid.UUID:
    """The {run_id} path parameter; anything that is not a UUID is an unknown run."""
    return path_uuid(request, "run_id", "run")


def _json(model: BaseModel, status: int = 200) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"), status_code=status)


def _submission(tenant: str, body: SubmitRunBody,
                traceparent: str | None = None) -> SubmitRequest:
    return SubmitRequest(tenant=tenant, workflow=body.workflow, version=body.version,
                         inputs=body.inputs, event_key=body.event_key,
                         priority=body.priority, deadline_s=body.deadline_s,
                         concurrency=body.concurrency, metadata=body.metadata,
                         traceparent=traceparent, budget=body.budget)


def _count(request: Request, outcome: SubmitResult | DagqError) -> None:
    label = ("created" if outcome.created else "existing") \
        if isinstance(outcome, SubmitResult) else \
        "conflict" if isinstance(outcome, Conflict) else "rejected"
    request.app.state.metrics.submissions.labels(label).inc()


def _deadline(state: Any) -> float | None:
    """When this request's database bound ends: DAGQ_API_DB_TIMEOUT_S from now (its
    arrival), for all its database work, the wait for the group commit included."""
    bound = state.repo.db.call_timeout_s
    return None if bound is None else time.monotonic() + bound


async def submit_run(request: Request) -> JSONResponse:
    """Validated here (from cached specs when it can), written by the group commit; in
    the caller's trace (a `traceparent` header) or a new one (dagq.api.tracing)."""
    deadline = _deadline(request.app.state)
    key = await principal(request)
    with submit_trace(request, key.tenant) as trace:
        return await _submit_run(request, key, trace, deadline)


async def _submit_run(request: Request, key: ApiKey, trace: SubmitTrace,
                      deadline: float | None) -> JSONResponse:
    state = request.app.state
    run = None
    try:
        body = await read_model(request, SubmitRunBody)
        req = _submission(key.tenant, body, trace.traceparent)
        run = cached_run(req, state.specs) or await run_in_threadpool(
            call_by, deadline, service.prepare, state.repo, req, state.specs)
        await run_in_threadpool(call_by, deadline, _attach, state, key.tenant, run, body)
        outcome = (await state.submits.submit([run], [req], deadline=deadline))[0]
    except DagqError as exc:
        outcome = exc
    await run_in_threadpool(_detach_unless_created, state, [(run, body if run else None)],
                            [outcome])
    _count(request, outcome)
    trace.outcome(outcome)
    if isinstance(outcome, DagqError):
        raise outcome
    return _json(outcome, 201 if outcome.created else 200)


def _prepare_all(state: Any, tenant: str, items: list[Any],
                 traceparent: str | None = None) -> list[Any]:
    """Each item as (its NewRun, its request, its body) or its error (blocking: may read
    specs; writes the items' callbacks)."""
    prepared: list[Any] = []
    for i, item in enumerate(items):
        try:
            body = validate(SubmitRunBody, item, f"runs[{i}]")
            req = _submission(tenant, body, traceparent)
            run = service.prepare(state.repo, req, state.specs)
            _attach(state, tenant, run, body)
            prepared.append((run, req, body))
        except DagqError as exc:
            prepared.append(exc)
    return prepared


def _attach(state: Any, tenant: str, run: Any, body: SubmitRunBody) -> None:
    """A submit's callback, written before its run (dagq.service.webhooks.attach_callback)."""
    if body.callback is not None:
        hooks.attach_callback(state.repo, state.settings, tenant, run.id,
                              body.callback.model_dump())


def _detach_unless_created(state: Any, items: list[tuple[Any, Any]],
                           outcomes: list[SubmitResult | DagqError]) -> None:
    """Forget the callbacks of submits that did not create their run. A run prepared
    again (a new workflow version came meanwhile) got another id: its callback moves to
    it, after its commit (an event at its very submit, a root wait's, is not sent)."""
    for (run, body), outcome in zip(items, outcomes, strict=True):
        if run is None or body is None or body.callback is None:
            continue
        created = isinstance(outcome, SubmitResult) and outcome.created
        if not created or outcome.run_id != run.id:
            hooks.detach_callback(state.repo, run.id)
        if created and outcome.run_id != run.id:
            hooks.attach_callback(state.repo, state.settings, run.tenant,
                                  outcome.run_id, body.callback.model_dump())


async def submit_batch(request: Request) -> JSONResponse:
    """Up to 1,000 submissions; each its own result or error, in order (200). One
    submit span (dagq.api.tracing) is every run's parent."""
    deadline = _deadline(request.app.state)
    key = await principal(request)
    with submit_trace(request, key.tenant, "dagq.submit_batch") as trace:
        return await _submit_batch(request, key, trace, deadline)


async def _submit_batch(request: Request, key: ApiKey, trace: SubmitTrace,
                        deadline: float | None) -> JSONResponse:
    state = request.app.state
    body = await read_model(request, SubmitBatchBody)
    prepared = await run_in_threadpool(call_by, deadline, _prepare_all, state, key.tenant,
                                       body.runs, trace.traceparent)
    ready = [item for item in prepared if not isinstance(item, DagqError)]
    outcomes = await state.submits.submit([run for run, _, _ in ready],
                                          [req for _, req, _ in ready], deadline=deadline)
    await run_in_threadpool(_detach_unless_created, state,
                            [(run, body) for run, _, body in ready], outcomes)
    written = iter(outcomes)
    results = []
    for item in prepared:
        outcome = item if isinstance(item, DagqError) else next(written)
        _count(request, outcome)
        trace.outcome(outcome)
        results.append(error_body(outcome.code, outcome.message, outcome.details)
                       if isinstance(outcome, DagqError) else outcome.model_dump(mode="json"))
    return JSONResponse({"results": results})


async def get_run(request: Request) -> JSONResponse:
    if request.path_params["run_id"] == "batch":  # GET of POST /v1/runs/batch's path
        raise HTTPException(405, headers={"Allow": "POST"})
    key = await principal(request)
    run = await run_in_threadpool(service.get_run, request.app.state.repo, run_id_of(request),
                                  tenant_scope(key))
    return _json(run)


async def list_runs(request: Request) -> JSONResponse:
    key = await principal(request)
    query = read_query(request, ListRunsQuery)
    meta = meta_filters(request.query_params.multi_items())
    tenant = tenant_scope(key) if tenant_scope(key) is not None else query.tenant
    if query.id_prefix is not None:
        if meta:
            raise InvalidRequest("id_prefix cannot be combined with meta.* filters")
        return await _runs_by_prefix(request, query, tenant)
    cursor = decode_cursor(query.cursor) if query.cursor else None
    runs = await run_in_threadpool(
        request.app.state.repo.runs.list_runs, tenant=tenant, status=query.status,
        workflow=query.workflow, limit=query.limit + 1, cursor=cursor, parent=query.parent,
        meta=meta, created_after=parse_time(query.created_after, "created_after"),
        created_before=parse_time(query.created_before, "created_before"),
    )
    page = runs[:query.limit]
    next_cursor = None
    if len(runs) > query.limit:
        last = page[-1]
        next_cursor = encode_cursor(last.created_at, last.run_id)
    return _json(RunList(runs=[RunSummary.of(r) for r in page], next_cursor=next_cursor))


async def _runs_by_prefix(request: Request, query: ListRunsQuery,
                          tenant: str | None) -> JSONResponse:
    """?id_prefix=: the caller's runs whose id starts with it, by id (one page)."""
    mixed = [name for name in ("status", "workflow", "parent", "cursor", "created_after",
                               "created_before")
             if getattr(query, name) is not None]
    if mixed:
        raise InvalidRequest(f"id_prefix cannot be combined with {', '.join(mixed)}")
    prefix = service.check_prefix(query.id_prefix or "")
    runs = await run_in_threadpool(request.app.state.repo.runs.runs_by_id_prefix, prefix,
                                   tenant, limit=query.limit)
    return _json(RunList(runs=[RunSummary.of(r) for r in runs], next_cursor=None))


async def _run_action(request: Request, action: Callable[..., str]) -> JSONResponse:
    """Cancel or retry: 202 with the run's new status."""
    key = await principal(request)
    run_id = run_id_of(request)
    status = await run_in_threadpool(action, request.app.state.repo, run_id,
                                     tenant_scope(key))
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
        tenant=tenant_scope(key), data=body.data, signal_id=body.signal_id,
        max_buffered=request.app.state.settings.max_buffered_signals_per_run)
    return _json(result, 200 if result.duplicate else 202)


async def rerun_run(request: Request) -> JSONResponse:
    """201 with the new run's id: a rerun of a terminal run from some of its nodes."""
    key = await principal(request)
    run_id = run_id_of(request)
    body = await read_model(request, RerunBody)
    result = await run_in_threadpool(
        service.rerun_run, request.app.state.repo, run_id, tenant_scope(key),
        from_=body.from_, outputs=body.outputs, inputs=body.inputs)
    return _json(result, 201)


async def cancel_run(request: Request) -> JSONResponse:
    return await _run_action(request, service.cancel_run)


async def retry_run(request: Request) -> JSONResponse:
    """202 with the run's new status; no body (or an empty one) retries every item of a
    map node again, `{"items": "failed"}` only the items that did not succeed."""
    key = await principal(request)
    run_id = run_id_of(request)
    body = await read_model(request, RetryBody) if (await request.body()).strip() \
        else RetryBody()
    status = await run_in_threadpool(service.retry_run, request.app.state.repo, run_id,
                                     tenant_scope(key), body.items)
    return _json(RunAction(run_id=run_id, status=status), 202)


async def resolve_node(request: Request) -> JSONResponse:
    """200: a failed or cancelled node succeeded with the given outputs; its run goes on.
    Recorded as a node_resolved event naming the caller's key id."""
    key = await principal(request)
    run_id = run_id_of(request)
    body = await read_model(request, ResolveBody)
    result = await run_in_threadpool(
        lambda: service.resolve_node(request.app.state.repo, run_id,
                                     request.path_params["node_key"], body.outputs,
                                     tenant=tenant_scope(key), by=resolver(key)))
    return _json(result)


def resolver(key: ApiKey) -> str:
    """`by` of a node resolved through the API: the calling key's id."""
    return str(key.id)


routes = [
    Route("/v1/runs", submit_run, methods=["POST"]),
    Route("/v1/runs/batch", submit_batch, methods=["POST"]),
    Route("/v1/runs", list_runs, methods=["GET"]),
    Route("/v1/runs/{run_id}", get_run, methods=["GET"]),
    Route("/v1/runs/{run_id}/cancel", cancel_run, methods=["POST"]),
    Route("/v1/runs/{run_id}/retry", retry_run, methods=["POST"]),
    Route("/v1/runs/{run_id}/rerun", rerun_run, methods=["POST"]),
    Route("/v1/runs/{run_id}/nodes/{node_key}/resolve", resolve_node, methods=["POST"]),
    Route("/v1/runs/{run_id}/signals/{name}", send_signal, methods=["POST"]),
]
