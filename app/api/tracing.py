"""The submit's span (`POST /v1/runs`, `POST /v1/runs/batch`) and the traceparent its
runs are stored with.

The caller's W3C `traceparent` header, when valid, is the parent; an invalid one is
ignored (Trace Context: the receiver starts a new trace). With tracing on
(dagq.runtime.tracing), the API's `dagq.submit` span is the runs' parent, so every node
attempt's span joins the caller's trace under it; with tracing off, the header itself is
stored (the workers' spans, if they trace, then join the caller's trace directly), and
no OpenTelemetry code runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from dagq.errors import DagqError
from dagq.models import SubmitResult
from dagq.runtime import tracing
from dagq.traceparent import parse_traceparent


@dataclass
class SubmitTrace:
    traceparent: str | None  # what the runs are stored with
    span: Any = None  # the open dagq.submit span (tracing on)
    runs: list[str] = field(default_factory=list)

    def outcome(self, outcome: SubmitResult | DagqError) -> None:
        """Record one run's result on the span (its id; an error's code)."""
        if self.span is None:
            return
        if isinstance(outcome, SubmitResult):
            self.runs.append(str(outcome.run_id))
            if len(self.runs) == 1:
                self.span.set_attribute("dagq.run_id", str(outcome.run_id))
                self.span.set_attribute("dagq.created", outcome.created)
        else:
            self.span.add_event("dagq.rejected", {"dagq.error.code": outcome.code,
                                                 "dagq.error.message": outcome.message[:500]})


@contextlib.contextmanager
def submit_trace(request: Request, tenant: str, name: str = "dagq.submit",
                 ) -> Iterator[SubmitTrace]:
    header = parse_traceparent(request.headers.get("traceparent"))
    tracer = tracing.tracer()
    if tracer is None:
        yield SubmitTrace(header)
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    parent = tracing.context_of(header) if header is not None else None
    span = tracer.start_span(name, context=parent, kind=SpanKind.SERVER,
                             attributes={"dagq.tenant": tenant,
                                         "http.request.method": request.method,
                                         "url.path": request.url.path})
    trace = SubmitTrace(tracing.traceparent_of(span) or header, span)
    try:
        yield trace
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))
        raise
    finally:
        if len(trace.runs) > 1:
            span.set_attribute("dagq.runs", len(trace.runs))
        span.end()
