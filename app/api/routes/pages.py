"""Pages: the dashboard at `/` (when installed), /docs and /openapi.json. No auth."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import get_args

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from dagq.api.docs_page import DOCS_HTML, FALLBACK_INDEX_HTML
from dagq.api.openapi import openapi_document
from dagq.states import (
    OPEN_RUN_STATUSES,
    RETRYABLE_RUN_STATUSES,
    TERMINAL_RUN_EVENTS,
    NodeStatus,
    RunStatus,
)

# Package data of `dagq` (app/dashboard in the repository).
DASHBOARD_DIR = Path(str(files("dagq").joinpath("dashboard")))


class DashboardStatic(StaticFiles):
    """Dashboard assets; a 404 (not a 500) while the dashboard is not installed.
    `states.js` is made from dagq.states (see `states_js`), not read from a file."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path == "states.js" and scope["method"] in ("GET", "HEAD"):
            return Response(states_js(), media_type="text/javascript")
        return await super().get_response(path, scope)

    async def check_config(self) -> None:
        if not (DASHBOARD_DIR / "static").is_dir():
            raise HTTPException(404, "the dashboard is not installed")
        await super().check_config()


async def index(request: Request) -> Response:
    page = DASHBOARD_DIR / "index.html"
    if page.is_file():
        return FileResponse(page, media_type="text/html")
    return HTMLResponse(FALLBACK_INDEX_HTML)


def states_js() -> str:
    """The statuses and their sets as an ES module, from dagq.states: the dashboard's
    only copy, made when it is served, so it cannot drift from Python's."""
    exported = {
        "RUN_STATUSES": list(get_args(RunStatus)),
        "NODE_STATUSES": list(get_args(NodeStatus)),
        "OPEN_RUN_STATUSES": sorted(OPEN_RUN_STATUSES),
        "RETRYABLE_RUN_STATUSES": sorted(RETRYABLE_RUN_STATUSES),
        "TERMINAL_RUN_EVENTS": sorted(TERMINAL_RUN_EVENTS),
    }
    lines = ["// Made by the API from dagq.states (app/states.py) when served; do not copy."]
    lines += [f"export const {name} = {json.dumps(values)};" for name, values in exported.items()]
    return "\n".join(lines) + "\n"


async def docs(request: Request) -> HTMLResponse:
    return HTMLResponse(DOCS_HTML)


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document())


routes = [
    Route("/", index, methods=["GET"]),
    Route("/docs", docs, methods=["GET"]),
    Route("/openapi.json", openapi_json, methods=["GET"]),
    # follow_symlink: an editable install links the package's files (scripts/_venv.sh);
    # a path outside the directory is still refused.
    Mount("/static", app=DashboardStatic(directory=DASHBOARD_DIR / "static", check_dir=False,
                                         follow_symlink=True),
          name="static"),
]
