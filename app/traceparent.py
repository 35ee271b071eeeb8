"""W3C Trace Context `traceparent` values: checked, and read from the caller's current
OpenTelemetry span. Vocabulary (no I/O, no OpenTelemetry import): the API, the workers,
the CLI and the client share it, and the client may import only this layer.

A `traceparent` is `VERSION-TRACEID-PARENTID-FLAGS` in lowercase hex (version 00:
exactly 55 characters); all-zero ids and version ff are invalid
(https://www.w3.org/TR/trace-context/#traceparent-header).
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from dagq.errors import InvalidRequest

_FORM = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\s]*)?")
MAX_LENGTH = 256  # a future version may append fields; a stored value stays this short
TRACEPARENT_ENV = "TRACEPARENT"  # the OpenTelemetry environment-variable carrier (CLI)


def parse_traceparent(value: Any) -> str | None:
    """`value` if it is a valid traceparent, else None. Trace Context says a receiver
    that gets an invalid one starts a new trace rather than refusing the request: the
    API does so with a bad header."""
    if not isinstance(value, str) or len(value) > MAX_LENGTH:
        return None
    value = value.strip()
    found = _FORM.fullmatch(value)
    if found is None:
        return None
    version, trace_id, span_id, _flags, rest = found.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return value


def check_traceparent(value: Any) -> str | None:
    """An explicit `traceparent=` (Python API, CLI): None stays None, a valid one is
    kept, anything else is a clear 422 before anything is written."""
    if value is None:
        return None
    found = parse_traceparent(value)
    if found is None:
        raise InvalidRequest("traceparent must be a W3C traceparent "
                             "(00-<32 hex trace id>-<16 hex span id>-<2 hex flags>)",
                             details={"traceparent": str(value)[:MAX_LENGTH]})
    return found


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


def current_traceparent() -> str | None:
    """The caller's current OpenTelemetry span as a traceparent, or None. Imports
    nothing: an application that never loaded OpenTelemetry has no current span, so
    this costs a dictionary lookup."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format_traceparent(ctx.trace_id, ctx.span_id, bool(ctx.trace_flags & 1))


def env_traceparent() -> str | None:
    """The `TRACEPARENT` environment variable (OpenTelemetry's carrier for a process
    started inside a trace, e.g. a CI step): the CLI's submits join that trace."""
    return os.environ.get(TRACEPARENT_ENV) or None
