"""Operations: /healthz, /readyz, /metrics (no auth; the bind address guards /metrics)
and /v1/queues."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dagq.api.auth import principal, tenant_scope
from dagq.api.errors import NotReady
from dagq.api.metrics import CONTENT_TYPE
from dagq.api.schemas import Health, QueueList, QueueStats, QueueTenant
from dagq.errors import DatabaseUnavailable

READY_TIMEOUT_S = 2.0
NO_WORKER_WARNING = ("no live worker: runs are accepted but wait until a worker starts "
                     "(see `dagq worker`; a worker that cannot import a DAGQ_ACTOR_MODULES "
                     "module says why in its log)")


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse(Health(status="ok").model_dump(mode="json", exclude_none=True))


async def readyz(request: Request) -> JSONResponse:
    try:
        pending, workers = await run_in_threadpool(request.app.state.repo.ops.readiness,
                                                   timeout_s=READY_TIMEOUT_S)
    except DatabaseUnavailable as exc:
        raise NotReady("the database does not answer", {"reason": exc.message}) from None
    if pending:
        raise NotReady("the database schema is not current: run `dagq db migrate`",
                       {"pending_migrations": pending})
    # The API is ready without workers (submits are accepted and wait): say so, not 503.
    warnings = [] if workers else [NO_WORKER_WARNING]
    return JSONResponse(Health(status="ready", pending_migrations=[], workers=workers,
                               warnings=warnings).model_dump(mode="json"))


async def metrics(request: Request) -> Response:
    body = await run_in_threadpool(request.app.state.metrics.render, request.app.state.repo)
    return Response(body, media_type=CONTENT_TYPE)


async def queues(request: Request) -> JSONResponse:
    """Every tenant's counts for an admin key; a tenant key counts only its own nodes."""
    tenant = tenant_scope(await principal(request))
    repo = request.app.state.repo
    rows = await run_in_threadpool(repo.ops.queue_stats, tenant)
    by_queue: dict[str, list[QueueTenant]] = {}
    for t in await run_in_threadpool(repo.ops.queue_tenants, tenant):
        by_queue.setdefault(t["queue"], []).append(
            QueueTenant(**{k: v for k, v in t.items() if k != "queue"}))
    out = QueueList(queues=[QueueStats(name=r["queue"], tenants=by_queue.get(r["queue"], []),
                                       **{k: v for k, v in r.items() if k != "queue"})
                            for r in rows])
    return JSONResponse(out.model_dump(mode="json"))


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/v1/queues", queues, methods=["GET"]),
]
