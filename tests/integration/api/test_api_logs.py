"""The API's log lines carry the tenant of the request they are about (issue 31 item 2):
`principal` binds the caller's key to the request's task, a scope of dagq.runtime.logs."""

from __future__ import annotations

import io
import json
import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from dagq.api.app import create_app
from dagq.api.auth import caller, principal
from dagq.config import Settings
from dagq.runtime import logs
from dagq.runtime.logs import JsonFormatter


def test_a_request_s_lines_carry_its_tenant_and_no_other_line_does(db_url) -> None:
    create_app(Settings(auth="off"), db_url)  # registers the scope, as the API process
    assert caller.get in logs._scopes

    async def endpoint(request: Request) -> JSONResponse:
        key = await principal(request)
        logging.getLogger("dagq.api").warning("inside the request")
        return JSONResponse({"tenant": key.tenant})

    app = Starlette(routes=[Route("/x", endpoint)])
    app.state.settings = Settings(auth="off")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    target = logging.getLogger("dagq.api")
    target.addHandler(handler)
    try:
        with TestClient(app) as client:
            assert client.get("/x").json() == {"tenant": "default"}
        target.warning("outside any request")
    finally:
        target.removeHandler(handler)
    inside, outside = (json.loads(line) for line in out.getvalue().splitlines())
    assert inside["msg"] == "inside the request" and inside["tenant"] == "default"
    assert "run_id" not in inside
    assert "tenant" not in outside
