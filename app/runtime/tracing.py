"""OpenTelemetry tracing (the `dagq[otel]` extra), configured by the standard `OTEL_*`
variables. Off unless `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`) and
the SDK is installed: then `tracer()` is None, read once per process, and nothing of
OpenTelemetry is imported (callers test `tracer() is None` and skip all span work).

On: the process uses the global SDK tracer provider if the application installed one
(e.g. `opentelemetry-instrument`), else makes one (resource from `OTEL_SERVICE_NAME` /
`OTEL_RESOURCE_ATTRIBUTES`, sampler from `OTEL_TRACES_SAMPLER`, batch processor from
`OTEL_BSP_*`, exporter from `OTEL_EXPORTER_OTLP_*`) and installs it globally, so that an
executor's instrumented HTTP or model client exports through it too and its spans nest
under the node attempt's span.

Span ids of node attempts are chosen, not random (`attempt_span_id`): attempt N links to
attempt N-1's span without dagq storing span ids, and a worker that runs a reclaimed
attempt can record the lost one's span under its id (dagq.workers.tracing).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from typing import TYPE_CHECKING, Any

from dagq.traceparent import format_traceparent

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

log = logging.getLogger("dagq.tracing")

INSTRUMENTATION = "dagq"
EXPORTERS = ("otlp", "console")  # what OTEL_TRACES_EXPORTER may name (comma-separated)
_UNSET: Any = object()
_tracer: Any = _UNSET  # Tracer | None once decided
_lock = threading.Lock()
_ids: Any = None  # the provider's ChosenIds, where dagq set it up


def wanted(environ: dict[str, str] | os._Environ[str] | None = None) -> bool:
    """Whether the environment asks for traces: an exporter named, the SDK not disabled."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    return any(n and n != "none" for n in names)


def tracer() -> Tracer | None:
    """The process's tracer, or None when tracing is off (decided once)."""
    found = _tracer
    if found is _UNSET:
        with _lock:
            if _tracer is _UNSET:
                _decide()
            found = _tracer
    return found


def _decide() -> None:
    global _tracer
    _tracer = None
    if not wanted():
        return
    try:
        from opentelemetry import trace  # noqa: F401 - the extra's presence
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        log.warning("OTEL_TRACES_EXPORTER is set but OpenTelemetry is not installed "
                    "(pip install 'dagq[otel]'): tracing is off")
        return
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):  # the application's own set-up
        _tracer = _tracer_of(current)
        return
    provider = _provider_from_env()
    if provider is None:
        return
    trace.set_tracer_provider(provider)
    _tracer = _tracer_of(provider)


def _provider_from_env() -> TracerProvider | None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create(_default_resource()))
    added = 0
    for name in os.environ.get("OTEL_TRACES_EXPORTER", "").split(","):
        name = name.strip().lower()
        if name in ("", "none"):
            continue
        if name == "otlp":
            protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or \
                os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
            if protocol != "http/protobuf":
                log.warning("OTLP protocol %r is not supported by dagq[otel]; using "
                            "http/protobuf", protocol)
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            log.warning("unknown OTEL_TRACES_EXPORTER %r (dagq knows %s): ignored",
                        name, ", ".join(EXPORTERS))
            continue
        added += 1
    return provider if added else None


_process = "dagq"


def name_process(kind: str) -> None:
    """The default service name of this process's spans: `dagq-api`, `dagq-worker`..."""
    global _process
    _process = f"dagq-{kind}"


def _default_resource() -> dict[str, str]:
    """service.name, unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES give one
    (Resource.create lets attributes passed here win over those variables)."""
    if os.environ.get("OTEL_SERVICE_NAME") or \
            "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        return {}
    return {"service.name": _process}


def _tracer_of(provider: TracerProvider) -> Tracer:
    """dagq's tracer on `provider`, whose id generator now lets dagq choose an attempt
    span's id (and a run's trace id) for the next span this thread starts."""
    global _ids
    if not isinstance(provider.id_generator, ChosenIds):
        provider.id_generator = ChosenIds(provider.id_generator)
    _ids = provider.id_generator
    from dagq import __version__

    return provider.get_tracer(INSTRUMENTATION, __version__)


def install(provider: TracerProvider | None) -> None:
    """Use `provider` for dagq's spans in this process (an embedding application, the
    in-process tests with an in-memory exporter); None turns tracing off."""
    global _tracer
    with _lock:
        _tracer = None if provider is None else _tracer_of(provider)


def reset() -> None:
    """Decide again from the environment at the next `tracer()` (tests)."""
    global _tracer
    with _lock:
        _tracer = _UNSET


class ChosenIds:
    """An id generator that gives the next span this thread starts the ids chosen with
    `choose` (once), and otherwise asks the generator it wraps."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._next = threading.local()

    def choose(self, span_id: int | None, trace_id: int | None = None) -> None:
        self._next.span_id, self._next.trace_id = span_id, trace_id

    def generate_span_id(self) -> int:
        chosen = getattr(self._next, "span_id", None)
        if chosen is not None:
            self._next.span_id = None
            return chosen
        return int(self.inner.generate_span_id())

    def __getattr__(self, name: str) -> Any:  # what a newer SDK asks the generator
        return getattr(self.inner, name)

    def generate_trace_id(self) -> int:
        chosen = getattr(self._next, "trace_id", None)
        if chosen is not None:
            self._next.trace_id = None
            return chosen
        return int(self.inner.generate_trace_id())


def choose_ids(span_id: int | None, trace_id: int | None = None) -> None:
    """The ids of the next span this thread starts on dagq's tracer."""
    if _ids is not None:
        _ids.choose(span_id, trace_id)


def attempt_span_id(run_id: uuid.UUID, node_id: int, attempt: int) -> int:
    """The span id of one node attempt: the same in every process, never 0."""
    digest = hashlib.blake2b(f"{run_id}/{node_id}/{attempt}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") or 1


def run_trace_id(run_id: uuid.UUID) -> int:
    """The trace id of a run submitted without a trace: its id's 128 bits."""
    return run_id.int or 1


def traceparent_of(span: Any) -> str | None:
    """A started span's context as a traceparent (None if it is not valid)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return format_traceparent(ctx.trace_id, ctx.span_id, bool(ctx.trace_flags & 1))


def context_of(traceparent: str | None) -> Any:
    """An OpenTelemetry context whose parent is `traceparent` (None: an empty one)."""
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if traceparent is None:
        return Context()
    return TraceContextTextMapPropagator().extract({"traceparent": traceparent},
                                                   context=Context())
