"""Pages: the dashboard at `/` (when installed), /docs and /openapi.json. No auth."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dagq.api.docs_page import DOCS_HTML, FALLBACK_INDEX_HTML
from dagq.api.openapi import openapi_document

# Package data of `dagq` (app/dashboard in the repository).
DASHBOARD_DIR = Path(str(files("dagq").joinpath("dashboard")))


class DashboardStatic(StaticFiles):
    """Dashboard assets; a 404 (not a 500) while the dashboard is not installed."""

    async def check_config(self) -> None:
        if not (DASHBOARD_DIR / "static").is_dir():
            raise HTTPException(404, "the dashboard is not installed")
        await super().check_config()


async def index(request: Request) -> Response:
    page = DASHBOARD_DIR / "index.html"
    if page.is_file():
        return FileResponse(page, media_type="text/html")
    return HTMLResponse(FALLBACK_INDEX_HTML)


async def docs(request: Request) -> HTMLResponse:
    return HTMLResponse(DOCS_HTML)


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document())


routes = [
    Route("/", index, methods=["GET"]),
    Route("/docs", docs, methods=["GET"]),
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Mount("/static", app=DashboardStatic(directory=DASHBOARD_DIR / "static", check_dir=False),
          name="static"),
]
