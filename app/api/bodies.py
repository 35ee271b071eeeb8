"""Reading requests: the body-size limit, JSON parsing and pydantic validation at the edge.

Everything a client sends is checked here before any service call, so that a value
Postgres cannot store (a NUL character, a lone surrogate, a non-finite number, absurd
nesting) is a 400/422 and never a 500.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dagq.api.errors import MalformedJson, PayloadTooLarge, error_response
from dagq.errors import InvalidRequest, NotFound
from dagq.jsonsafe import unstorable

M = TypeVar("M", bound=BaseModel)


class BodyLimitMiddleware:
    """413 for bodies over the limit: from Content-Length before any byte is read, and by
    counting streamed bytes for chunked bodies (raised from `receive`)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await error_response(400, "bad_request", "invalid Content-Length header")(
                scope, receive, send)
            return
        if declared is not None and declared > self.max_bytes:
            await self._too_large(declared)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(*self._too_large_args(received))
            return message

        await self.app(scope, limited_receive, send)

    def _too_large_args(self, size: int) -> tuple[str, dict[str, int]]:
        return (f"the request body exceeds {self.max_bytes} bytes (DAGQ_MAX_BODY_BYTES)",
                {"max_bytes": self.max_bytes, "received_at_least": size})

    def _too_large(self, size: int) -> Any:
        message, details = self._too_large_args(size)
        return error_response(413, PayloadTooLarge.code, message, details,
                              {"Connection": "close"})


def _content_length(scope: Scope) -> int | None:
    """The declared length; None when absent, -1 when unparseable."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    """JSON or MalformedJson (400). NaN/Infinity literals are not JSON."""
    if not raw.strip():
        raise MalformedJson("the request body is empty; a JSON document is expected")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise MalformedJson(f"the request body is not valid JSON: {exc}") from None


def check_storable(value: Any, where: str = "body") -> None:
    """Reject what jsonb/text columns cannot hold, and nesting deeper than MAX_JSON_DEPTH."""
    problem = unstorable(value, where)
    if problem is not None:
        raise InvalidRequest(problem)


async def read_json(request: Request) -> Any:
    """The body as checked JSON (400 if not JSON, 413 if too large, 422 if unstorable)."""
    data = parse_json(await request.body())
    check_storable(data)
    return data


async def read_model(request: Request, model: type[M]) -> M:
    return validate(model, await read_json(request), "body")


def read_query(request: Request, model: type[M]) -> M:
    params = dict(request.query_params)
    check_storable(params, "query")
    return validate(model, params, "query")


def validate(model: type[M], data: Any, where: str) -> M:
    """The model, or InvalidRequest (422) listing each problem as {loc, msg, type}."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        problems = [{"loc": [where, *err["loc"]], "msg": err["msg"], "type": err["type"]}
                    for err in errors]
        summary = "; ".join(
            f"{'.'.join(str(part) for part in p['loc'][1:]) or where}: {p['msg']}"
            for p in problems)
        raise InvalidRequest(f"invalid {where}: {summary}", problems) from None


def path_uuid(request: Request, name: str, what: str) -> uuid.UUID:
    """A UUID path parameter; anything else is an unknown id (404), never a 500."""
    raw = request.path_params[name]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"{what} {raw[:100]!r} not found ({what} ids are UUIDs)") from None
