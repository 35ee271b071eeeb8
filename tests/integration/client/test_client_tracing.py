"""The Python client sends a submit's trace (issue 31, item 1): an explicit
`traceparent=`, else the caller's current OpenTelemetry span; a bad explicit one is an
error before anything is sent."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider

from dagq.client import Client
from dagq.errors import InvalidRequest
from dagq.runtime.tracing import traceparent_of

CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ECHO = {"name": "client-traced", "nodes": {"a": {"executor": "builtin.echo"}}}


def stored(sql, run_id) -> str | None:
    return sql.execute("SELECT traceparent FROM dagq.runs WHERE id = %s",
                       (run_id,)).fetchone()["traceparent"]


def test_the_client_sends_the_given_or_the_current_trace(api, sql) -> None:
    with Client(api.url, api_key=api.acme) as client:
        assert stored(sql, client.submit(ECHO, traceparent=CALLER).run_id) == CALLER
        assert stored(sql, client.submit(ECHO, {"n": 2}).run_id) is None  # no current span
        tracer = TracerProvider().get_tracer("app")
        with tracer.start_as_current_span("caller") as span:
            run = client.submit(ECHO, {"n": 3})
        assert stored(sql, run.run_id) == traceparent_of(span)
        with pytest.raises(InvalidRequest, match="W3C traceparent"):
            client.submit(ECHO, traceparent="bogus")
