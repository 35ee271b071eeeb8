"""One Starlette route per path, so that a 405 names every method of the path in `Allow`.

Starlette answers a request whose path matches but whose method does not with the
methods of the FIRST route of that path: `POST /v1/runs` declared before `GET /v1/runs`
made `DELETE /v1/runs` say `Allow: POST`. Merging the routes of a path into one route
that dispatches by method fixes that and keeps the routes modules declarative.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

Endpoint = Callable[[Request], Awaitable[Response]]


def one_route_per_path(routes: list[BaseRoute]) -> list[BaseRoute]:
    """`routes` with the Routes of each path merged into one, in first-seen order."""
    merged: list[BaseRoute | str] = []  # a str stands for the merged route of that path
    by_path: dict[str, dict[str, Endpoint]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.methods:
            merged.append(route)
            continue
        if route.path not in by_path:
            by_path[route.path] = {}
            merged.append(route.path)
        handlers = by_path[route.path]
        for method in route.methods - {"HEAD"}:
            if method in handlers:
                raise ValueError(f"two routes for {method} {route.path}")
            handlers[method] = route.endpoint
    return [_dispatching(item, by_path[item]) if isinstance(item, str) else item
            for item in merged]


def _dispatching(path: str, handlers: dict[str, Endpoint]) -> Route:
    if len(handlers) == 1:
        [(method, endpoint)] = handlers.items()
        return Route(path, endpoint, methods=[method])

    async def endpoint(request: Request) -> Response:
        # Route already answered 405 for other methods; HEAD is served by GET.
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return Route(path, endpoint, methods=sorted(handlers))
