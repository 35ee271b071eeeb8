"""Tracing's vocabulary and its off switch (issue 31, item 1): W3C traceparent values
checked; OTEL_* deciding on or off; off, nothing of OpenTelemetry is imported by the
API, the workers, the client or the CLI, and a broker's middleware stack is unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from dagq.errors import InvalidRequest
from dagq.runtime import tracing
from dagq.traceparent import check_traceparent, parse_traceparent

GOOD = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize("value", [
    GOOD, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future-field",
])
def test_valid_traceparents_are_kept(value: str) -> None:
    assert parse_traceparent(value) == value
    assert check_traceparent(value) == value


@pytest.mark.parametrize("value", [
    "", "garbage", GOOD.upper(), GOOD + "-extra",  # version 00 has exactly 4 fields
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff: invalid
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all-zero trace id
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # all-zero span id
    "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",  # short trace id
    "00-" + "a" * 300, 17, None,
])
def test_invalid_traceparents_are_dropped_or_refused(value: object) -> None:
    assert parse_traceparent(value) is None  # a header: a new trace (W3C)
    if value is not None:  # an explicit value: a clear 422
        with pytest.raises(InvalidRequest, match="W3C traceparent"):
            check_traceparent(value)


@pytest.mark.parametrize(("env", "on"), [
    ({}, False), ({"OTEL_TRACES_EXPORTER": "none"}, False),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, True), ({"OTEL_TRACES_EXPORTER": "console,none"}, True),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
])
def test_the_environment_decides(env: dict[str, str], on: bool) -> None:
    assert tracing.wanted(env) is on


def test_attempt_span_ids_are_the_same_everywhere_and_differ_per_attempt() -> None:
    run = uuid.uuid4()
    ids = {tracing.attempt_span_id(run, 7, attempt) for attempt in (1, 2, 3)}
    assert len(ids) == 3 and 0 not in ids
    assert tracing.attempt_span_id(run, 7, 2) == tracing.attempt_span_id(run, 7, 2)
    assert tracing.run_trace_id(run) == run.int


OFF = """
import sys
from dagq.api.app import create_app
from dagq.cli import main
from dagq.client import Client
from dagq.runtime import tracing
from dagq.traceparent import current_traceparent
from dagq.workers.broker import PostgresBroker
from dagq.workers.tracing import with_attempt_spans
from dagq.workers.leases import LeaseBook

stack = [object()]
assert tracing.tracer() is None
assert with_attempt_spans(stack, LeaseBook(), None) is stack
assert current_traceparent() is None
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
assert not loaded, loaded
print("off")
"""


def test_off_nothing_of_opentelemetry_is_imported() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", OFF], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "off"


def test_asked_for_without_the_extra_it_is_off_with_a_warning() -> None:
    script = ("import sys; sys.modules['opentelemetry'] = None\n"  # as if not installed
              "from dagq.runtime import tracing\n"
              "assert tracing.tracer() is None\nprint('off')")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "OTEL_TRACES_EXPORTER": "otlp"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "dagq[otel]" in done.stderr
