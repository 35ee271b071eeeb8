"""The Starlette application: routes, error handlers, middleware and the lifespan that
opens the pool and the LISTEN connection."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dagq.api.auth import KeyCache, caller
from dagq.api.bodies import BodyLimitMiddleware
from dagq.api.errors import EXCEPTION_HANDLERS
from dagq.api.hub import EventHub
from dagq.api.metrics import ApiMetrics
from dagq.api.routes import (
    bulk,
    costs,
    dashboard,
    events,
    keys,
    ops,
    pages,
    pauses,
    runs,
    schedules,
    tenants,
    triggers,
    waits,
    webhooks,
    workflows,
)
from dagq.api.routing import one_route_per_path
from dagq.api.security import SecurityHeadersMiddleware
from dagq.api.submits import SubmitBatcher
from dagq.config import Settings
from dagq.runtime.db import SessionLimits, conninfo, open_pool
from dagq.runtime.listening import listen_target
from dagq.runtime.logs import add_scope
from dagq.runtime.pooler import detect
from dagq.service.runs import ensure_event_partitions
from dagq.service.submissions import SpecCache
from dagq.store import Store

log = logging.getLogger("dagq.api")


class RequestMetricsMiddleware:
    """Count requests and their latency by route template (never by raw path)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(scope["method"], name, status,
                                         time.perf_counter() - started)


def create_app(settings: Settings, url: str) -> Starlette:
    """The API for the database at `url` (already migrated, or /readyz says so)."""
    metrics = ApiMetrics()
    add_scope(caller.get)  # a request's lines carry its tenant

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Every database call of a request ends within DAGQ_API_DB_TIMEOUT_S (then 503):
        # the checkout, the statement (server and client side), the retries; a lost
        # connection is replaced by a fresh attempt soon after the database is back.
        bound, limits = settings.api_db_timeout_s, SessionLimits.for_api(settings)
        pool = await run_in_threadpool(
            open_pool, url, size=settings.pool_size, name="dagq-api", limits=limits,
            timeout_s=bound, reconnect_timeout_s=bound)
        repo = Store(pool, retry_s=bound, call_timeout_s=bound)
        # (through a transaction pooler: probed, and None, since it would never fire)
        listen = await run_in_threadpool(listen_target, url, settings)
        if listen is not None:
            await run_in_threadpool(detect, listen, settings)  # its startup options
        hub = EventHub(conninfo(listen, limits) if listen else None, poll_s=events.POLL_S)
        app.state.repo, app.state.hub = repo, hub
        app.state.submits = SubmitBatcher(repo, app.state.specs)
        # The event partitions ahead, even with no sweeper running (dagq.store.partitions).
        await run_in_threadpool(ensure_event_partitions, repo)
        await hub.start()
        app.state.submits.start()
        try:
            with contextlib.suppress(Exception):  # metrics must not stop the API
                await run_in_threadpool(metrics.start, repo)
            yield
        finally:
            await app.state.submits.stop()
            await hub.stop()
            await run_in_threadpool(repo.close)

    app = Starlette(
        routes=one_route_per_path([
            *bulk.routes, *runs.routes, *events.routes, *workflows.routes, *ops.routes,
            *dashboard.routes, *schedules.routes, *tenants.routes, *keys.routes, *webhooks.routes,
            *waits.routes, *triggers.routes, *pauses.routes, *costs.routes,
            *pages.routes]),
        middleware=[
            Middleware(SecurityHeadersMiddleware),
            Middleware(RequestMetricsMiddleware, metrics=metrics),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.keys = KeyCache()
    app.state.specs = SpecCache()
    return app
