"""Errors at the HTTP edge, and the handlers that turn every error into the one JSON shape
`{"error": {"code", "message", "details"}}` (docs/api.md, its error table)."""

from __future__ import annotations

import logging
import re
from typing import Any

import psycopg
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dagq.api.security import SECURITY_HEADERS
from dagq.errors import (
    Conflict,
    DagqError,
    DatabaseUnavailable,
    Forbidden,
    Gone,
    InvalidRequest,
    InvalidWorkflow,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
)

log = logging.getLogger("dagq.api")
# A respond link's token is in its path (/v1/respond/<token>, /respond/<token>) and is
# the link's whole authority: an answer that failed (503) leaves the link unused, so a
# token in a log line would let whoever reads the logs answer the wait.
_RESPOND_TOKEN = re.compile(r"(/respond/)[^/]+")


def logged_path(request: Request) -> str:
    """The request's path as logged: a respond link's token left out."""
    return _RESPOND_TOKEN.sub(r"\1<token>", request.url.path)


class MalformedJson(DagqError):
    """The request body is not JSON."""

    code = "malformed_json"


class NotReady(DagqError):
    """The database does not answer, or its schema is not current."""

    code = "not_ready"


STATUS: dict[type[DagqError], int] = {
    MalformedJson: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    PayloadTooLarge: 413,
    RateLimited: 429,
    InvalidRequest: 422,
    InvalidWorkflow: 422,
    NotReady: 503,
    DatabaseUnavailable: 503,
}

_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
               406: "not_acceptable", 413: "payload_too_large", 415: "unsupported_media_type"}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(
    status: int, code: str, message: str, details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status,
                        headers=headers)


def status_of(exc: DagqError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


async def dagq_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DagqError)
    status = status_of(exc)
    if status >= 500:
        log.warning("%s %s: %s", request.method, logged_path(request), exc.message)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 429:
        headers = {"Retry-After": str(max(1, round(getattr(exc, "retry_after", None) or 1)))}
    return error_response(status, exc.code, exc.message, exc.details, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), None,
                          dict(exc.headers) if exc.headers else None)


async def data_error(request: Request, exc: Exception) -> Response:
    """A value Postgres refused (the edge validation should have caught it first)."""
    log.warning("%s %s: Postgres rejected a value: %s", request.method, logged_path(request),
                exc)
    return error_response(422, "invalid_request", "a value in the request is not storable",
                          {"reason": str(exc).splitlines()[0] if str(exc) else None})


async def server_error(request: Request, exc: Exception) -> Response:
    # Starlette sends this response from outside every user middleware, so the
    # security headers middleware never sees it.
    log.error("%s %s failed", request.method, logged_path(request), exc_info=exc)
    return error_response(500, "internal", "internal server error", None, SECURITY_HEADERS)


EXCEPTION_HANDLERS = {
    DagqError: dagq_error,
    HTTPException: http_error,
    psycopg.DataError: data_error,
    Exception: server_error,
}
