"""One span per node attempt, in its run's trace (tracing on: dagq.runtime.tracing).

`AttemptSpans` is a Dramatiq middleware the broker adds to its stack only when tracing
is on: off, it is not in the stack, so no hook of it is ever called and nothing of
OpenTelemetry is imported. On:

- the span (kind CONSUMER) starts when the attempt starts and ends when it ends, with
  `dagq.run_id`, `dagq.node_key`, `dagq.executor`, `dagq.attempt`, `dagq.tenant`,
  `dagq.queue`, `dagq.queue_wait_ms`, `dagq.workflow`; a failed attempt's status is
  ERROR with the exception recorded;
- its parent is the run's traceparent (the submit's span, or the caller's; a child run
  has its parent run's), so every attempt of a run is a sibling under the submit; a run
  stored without one gets a trace of its own whose id is the run id;
- a first attempt's span has a `dagq.wait` event per durable wait (wait node) it
  depended on: what it waited for, how long, how it ended;
- attempt N > 1 links to attempt N-1's span (span ids are chosen: attempt_span_id) rather
  than nesting, and when N-1 was reclaimed (its worker died, its lease expired) this
  worker records N-1's span for it, from its start to its reclaim, as ERROR;
- the span is the current span while the executor runs, so an instrumented client's
  spans inside it nest under the attempt, and `current_node().trace_context` is its
  traceparent.

What a lease does not carry (the run's traceparent, tenant, queue wait, a reclaim) is
read once per batch of leases (dagq.store.traces), not once per attempt.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dramatiq.middleware import Middleware

from dagq.runtime import tracing
from dagq.workers import context
from dagq.workers.leases import LeaseBook, LeaseKey

if TYPE_CHECKING:
    from dramatiq.broker import Broker

    from dagq.models import LeasedNode
    from dagq.store import Store
    from dagq.workers.messages import LeasedMessage

log = logging.getLogger("dagq.tracing")


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1e9)


class AttemptSpans(Middleware):
    def __init__(self, book: LeaseBook, repo: Store) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry import trace

        self.book, self.repo = book, repo
        self._ctx, self._trace = otel_context, trace
        self._info: dict[int, dict[str, Any]] = {}  # node id -> attempt_traces row
        self._open: dict[LeaseKey, tuple[Any, Any]] = {}  # lease -> (span, context token)
        self._lock = threading.Lock()

    # -- the lookup ---------------------------------------------------------------------

    def _info_of(self, key: LeaseKey) -> dict[str, Any]:
        """The trace row of this lease: read with every other held lease lacking one."""
        node_id, version = key
        with self._lock:
            row = self._info.get(node_id)
            if row is not None and row["version"] == version:
                return row
            held = self.book.keys()  # noqa: SIM118 - LeaseBook.keys(): a locked copy
            wanted = {k[0] for k in held
                      if (r := self._info.get(k[0])) is None or r["version"] != k[1]}
            wanted.add(node_id)
            # forget rows of leases no longer held (handed back unstarted, lost)
            ids = {k[0] for k in held}
            self._info = {k: v for k, v in self._info.items() if k in ids}
            try:
                self._info.update(self.repo.traces.attempt_traces(sorted(wanted)))
            except Exception:  # noqa: BLE001 - a span without them beats a failed node
                log.warning("could not read the trace context of %d node(s)", len(wanted),
                            exc_info=True)
            return self._info.get(node_id) or {}

    # -- the hooks ----------------------------------------------------------------------

    def before_process_message(self, broker: Broker, message: LeasedMessage) -> None:
        key = message.lease_key
        lease = self.book.get(key)
        tracer = tracing.tracer()
        if lease is None or tracer is None:
            return
        node, info = lease.node, self._info_of(key)
        parent = tracing.context_of(info.get("traceparent"))
        trace_id, rooted = self._trace_id(node, parent)
        # a run without a traceparent: its spans are roots of the trace named by its id
        new_trace = None if rooted else trace_id
        if node.attempts > 1 and info.get("lost_started_at") is not None:
            self._lost_attempt(tracer, node, info, parent, trace_id, new_trace)
        links = []
        if node.attempts > 1:
            links.append(self._trace.Link(self._trace.SpanContext(
                trace_id, tracing.attempt_span_id(node.run_id, node.id, node.attempts - 1),
                is_remote=True, trace_flags=self._trace.TraceFlags(1)),
                {"dagq.attempt": node.attempts - 1, "dagq.link": "previous_attempt"}))
        tracing.choose_ids(tracing.attempt_span_id(node.run_id, node.id, node.attempts),
                           new_trace)
        span = tracer.start_span(f"node {node.node_key}", context=parent,
                                 kind=self._trace.SpanKind.CONSUMER, links=links,
                                 attributes=_attributes(node, info, node.attempts))
        for wait in info.get("waits") or ():
            _wait_event(span, wait)
        token = self._ctx.attach(self._trace.set_span_in_context(span))
        with self._lock:
            self._open[key] = (span, token)
        current = context._node.get()
        if current is not None:
            context._set(dataclasses.replace(current,
                                             trace_context=tracing.traceparent_of(span)))

    def after_process_message(self, broker: Broker, message: LeasedMessage, *,
                              result: Any = None, exception: BaseException | None = None,
                              ) -> None:
        self._end(message.lease_key, exception)

    def after_skip_message(self, broker: Broker, message: LeasedMessage) -> None:
        self._end(message.lease_key, None, skipped=True)

    def _end(self, key: LeaseKey, exception: BaseException | None, *,
             skipped: bool = False) -> None:
        with self._lock:
            opened = self._open.pop(key, None)
            self._info.pop(key[0], None)
        if opened is None:
            return
        span, token = opened
        try:
            if exception is not None:
                from opentelemetry.trace import Status, StatusCode

                span.record_exception(exception)
                span.set_status(Status(StatusCode.ERROR,
                                       f"{type(exception).__name__}: {exception}"[:500]))
            elif skipped:
                span.set_attribute("dagq.skipped", True)
            span.end()
        finally:
            try:
                self._ctx.detach(token)
            except Exception:  # noqa: BLE001 - another thread's token: nothing to undo
                log.debug("attempt span context not detached", exc_info=True)

    # -- helpers ------------------------------------------------------------------------

    def _trace_id(self, node: LeasedNode, parent: Any) -> tuple[int, bool]:
        """The attempt's trace id, and whether it comes from a parent."""
        found = self._trace.get_current_span(parent).get_span_context()
        if found.is_valid:
            return found.trace_id, True
        return tracing.run_trace_id(node.run_id), False

    def _lost_attempt(self, tracer: Any, node: LeasedNode, info: dict[str, Any],
                      parent: Any, trace_id: int, new_trace: int | None) -> None:
        """The reclaimed previous attempt's span, which its dead worker never ended."""
        from opentelemetry.trace import Status, StatusCode

        attempt = node.attempts - 1
        tracing.choose_ids(tracing.attempt_span_id(node.run_id, node.id, attempt), new_trace)
        span = tracer.start_span(f"node {node.node_key}", context=parent,
                                 kind=self._trace.SpanKind.CONSUMER,
                                 attributes={**_attributes(node, info, attempt),
                                             "dagq.reclaimed": True},
                                 start_time=_ns(info["lost_started_at"]))
        error = info.get("lost_error") or {}
        span.set_status(Status(StatusCode.ERROR, str(error.get("message")
                                                     or "lease expired")[:500]))
        span.end(end_time=_ns(info["lost_ended_at"]))


def with_attempt_spans(stack: list[Middleware], book: LeaseBook,
                       repo: Store) -> list[Middleware]:
    """A broker's middleware: with tracing on, AttemptSpans last (its span is the closest
    to the executor, so it is current while the executor runs). Off: `stack` as it is,
    so no hook of tracing is ever called."""
    if tracing.tracer() is None:
        return stack
    return [*stack, AttemptSpans(book, repo)]


def _wait_event(span: Any, wait: dict[str, Any]) -> None:
    """A durable wait this attempt's node depended on, as a span event at its end: what
    it waited for (a signal's name, seconds, a time), how long, how it ended."""
    spec = wait.get("wait") or {}
    attrs: dict[str, Any] = {"dagq.wait.node_key": wait["node_key"],
                             "dagq.wait.status": wait["status"]}
    for name in ("signal", "seconds", "until"):
        if spec.get(name) is not None:
            attrs[f"dagq.wait.{name}"] = spec[name]
    started, finished = wait.get("started_at"), wait.get("finished_at")
    if started and finished:
        begun, ended = datetime.fromisoformat(started), datetime.fromisoformat(finished)
        attrs["dagq.wait.seconds_waited"] = round((ended - begun).total_seconds(), 3)
        span.add_event("dagq.wait", attrs, timestamp=_ns(ended))
    else:
        span.add_event("dagq.wait", attrs)


def _attributes(node: LeasedNode, info: dict[str, Any], attempt: int) -> dict[str, Any]:
    found = {"dagq.run_id": str(node.run_id), "dagq.node_key": node.node_key,
             "dagq.executor": node.executor, "dagq.attempt": attempt,
             "dagq.queue": node.queue, "dagq.max_attempts": node.max_attempts}
    if node.item_index is not None:
        found["dagq.item_index"] = node.item_index
    for name in ("tenant", "workflow"):
        if info.get(name) is not None:
            found[f"dagq.{name}"] = info[name]
    if info.get("queue_wait_ms") is not None and attempt == node.attempts:
        found["dagq.queue_wait_ms"] = round(float(info["queue_wait_ms"]), 3)
    return found
