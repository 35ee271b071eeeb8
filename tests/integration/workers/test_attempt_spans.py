"""Tracing in one process (issue 31, item 1): the API's submit span under the caller's
traceparent, one span per node attempt in the worker under it (attributes, a retry as a
linked sibling, a failure's status and exception), the executor's own span nested under
its attempt, `current_node().trace_context`, a durable wait as an event of the attempt
that waited for it, a Dramatiq `send` joining the sender's trace; with the real
OpenTelemetry SDK and its in-memory exporter."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq import Worker
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from dagq import current_node
from dagq.runtime import tracing
from dagq.workers.broker import PostgresBroker
from dagq.workers.registry import ExecutorDef
from dagq.workers.tracing import AttemptSpans
from tests.harness.e2e import registered
from tests.harness.procs import wait_for, wait_for_run

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"

FAN_OUT = {"name": "traced-fan", "defaults": {"backoff": {"initial_s": 0.01, "max_s": 0.01}},
           "nodes": {
               "root": {"executor": "trace.ok"},
               "a": {"executor": "trace.ok", "depends_on": ["root"]},
               "b": {"executor": "trace.flaky", "depends_on": ["root"]},
               "approve": {"wait": {"signal": "go"}, "depends_on": ["root"]},
               "agg": {"executor": "builtin.merge", "depends_on": ["a", "b", "approve"]}}}


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.install(provider)
    memory.provider = provider  # the executors' own tracer (the application's)
    yield memory
    tracing.reset()
    provider.shutdown()


class Executors:
    """trace.ok (opens a span of its own inside), trace.flaky (fails attempt 1)."""

    def __init__(self, provider_tracer: Any) -> None:
        self.tracer = provider_tracer
        self.seen: dict[tuple[str, int], str | None] = {}
        self.lock = threading.Lock()

    def ok(self, payload: dict[str, Any]) -> dict[str, Any]:
        node = current_node()
        with self.lock:
            self.seen[(node.node_key, node.attempt)] = node.trace_context
        with self.tracer.start_as_current_span(f"inner {node.node_key}"):
            return {"ok": node.node_key}

    def flaky(self, payload: dict[str, Any]) -> dict[str, Any]:
        node = current_node()
        with self.lock:
            self.seen[(node.node_key, node.attempt)] = node.trace_context
        if node.attempt == 1:
            raise RuntimeError("first attempt fails")
        return {"ok": node.node_key}


def start_worker(db_url: str, executors: Executors) -> tuple[PostgresBroker, Worker]:
    from dagq.workers import builtins

    broker = PostgresBroker(url=db_url, worker_id=f"traced-{uuid.uuid4().hex[:6]}")
    broker.declare_executor(ExecutorDef("trace.ok", executors.ok))
    broker.declare_executor(ExecutorDef("trace.flaky", executors.flaky))
    broker.declare_executor(ExecutorDef("builtin.merge", builtins.merge))
    worker = Worker(broker, queues={"default"}, worker_threads=2, worker_timeout=100)
    worker.start()
    return broker, worker


def by_name(spans: list[Any]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    for group in found.values():
        group.sort(key=lambda s: s.attributes.get("dagq.attempt", 0))
    return found


def test_a_fan_out_runs_in_the_callers_trace(api, db_url, sql, exporter) -> None:
    executors = Executors(exporter.provider.get_tracer("user-code"))
    broker, worker = start_worker(db_url, executors)
    try:
        for name in ("trace.ok", "trace.flaky", "builtin.merge"):
            registered(sql, name)
        response = api.client.post("/v1/runs", json={"workflow": FAN_OUT},
                                   headers={**api.acme, "traceparent": CALLER})
        assert response.status_code == 201, response.text
        run_id = uuid.UUID(response.json()["run_id"])
        wait_for(lambda: sql.execute(
            "SELECT 1 FROM dagq.node_tasks WHERE run_id = %s AND node_key = 'approve' "
            "AND status = 'waiting'", (run_id,)).fetchone(), 30, "the wait node")
        signal = api.client.post(f"/v1/runs/{run_id}/signals/go", json={}, headers=api.acme)
        assert signal.status_code == 202, signal.text
        assert wait_for_run(api.repo, run_id, timeout=60).status == "succeeded"
        wait_for(lambda: len(exporter.get_finished_spans()) >= 8, 10,
                 f"every span: {[s.name for s in exporter.get_finished_spans()]}")
    finally:
        worker.stop()
        broker.close()
    spans = by_name(exporter.get_finished_spans())
    (submit,) = spans["dagq.submit"]
    # the submit joins the caller's trace, as the caller's span's child
    assert f"{submit.context.trace_id:032x}" == CALLER_TRACE
    assert f"{submit.parent.span_id:016x}" == CALLER_SPAN
    assert submit.attributes["dagq.run_id"] == str(run_id)
    stored = sql.execute("SELECT traceparent FROM dagq.runs WHERE id = %s",
                         (run_id,)).fetchone()["traceparent"]
    assert stored == tracing.traceparent_of(submit)

    attempts = [s for name, group in spans.items() if name.startswith("node ")
                for s in group]
    assert sorted((s.attributes["dagq.node_key"], s.attributes["dagq.attempt"])
                  for s in attempts) == [("a", 1), ("agg", 1), ("b", 1), ("b", 2), ("root", 1)]
    for span in attempts:  # siblings under the submit: retries are not nested
        assert span.context.trace_id == submit.context.trace_id
        assert span.parent.span_id == submit.context.span_id
        assert span.kind == trace.SpanKind.CONSUMER
        attrs = span.attributes
        assert attrs["dagq.run_id"] == str(run_id)
        assert attrs["dagq.tenant"] == "acme" and attrs["dagq.queue"] == "default"
        assert attrs["dagq.workflow"] == "traced-fan"
        assert attrs["dagq.queue_wait_ms"] >= 0
        assert attrs["dagq.executor"] in ("trace.ok", "trace.flaky", "builtin.merge")

    first, second = spans["node b"]
    assert first.status.status_code == StatusCode.ERROR
    assert "first attempt fails" in first.status.description
    assert [e.name for e in first.events] == ["exception"]
    assert second.status.status_code != StatusCode.ERROR
    (link,) = second.links  # the retry links to the attempt before it
    assert link.context.span_id == first.context.span_id
    assert link.attributes["dagq.link"] == "previous_attempt"

    for key in ("root", "a"):  # the executor's own span nests under its attempt
        (attempt,) = spans[f"node {key}"]
        (inner,) = spans[f"inner {key}"]
        assert inner.parent.span_id == attempt.context.span_id
        assert executors.seen[(key, 1)] == tracing.traceparent_of(attempt)
    assert executors.seen[("b", 2)] == tracing.traceparent_of(second)

    (agg,) = spans["node agg"]  # the wait it depended on, as an event
    (event,) = [e for e in agg.events if e.name == "dagq.wait"]
    assert event.attributes["dagq.wait.node_key"] == "approve"
    assert event.attributes["dagq.wait.signal"] == "go"
    assert event.attributes["dagq.wait.status"] == "succeeded"
    assert event.attributes["dagq.wait.seconds_waited"] >= 0


def test_a_dramatiq_send_joins_the_senders_trace(db_url, sql, exporter) -> None:
    broker = PostgresBroker(url=db_url, worker_id="traced-sender")
    done = threading.Event()

    @dramatiq.actor(broker=broker, actor_name="traced_actor", max_retries=0)
    def traced_actor(x: int) -> int:
        done.set()
        return x

    assert any(isinstance(m, AttemptSpans) for m in broker.middleware)
    with exporter.provider.get_tracer("app").start_as_current_span("sender") as sender:
        message = traced_actor.send(1)
    worker = Worker(broker, queues={"default"}, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        assert done.wait(30)
        wait_for(lambda: any(s.name.startswith("node ")
                             for s in exporter.get_finished_spans()), 10, "the attempt span")
    finally:
        worker.stop()
        broker.close()
    stored = sql.execute("SELECT traceparent FROM dagq.runs WHERE event_key = %s",
                         (message.message_id,)).fetchone()["traceparent"]
    assert stored == tracing.traceparent_of(sender)
    (attempt,) = [s for s in exporter.get_finished_spans() if s.name.startswith("node ")]
    assert attempt.parent.span_id == sender.get_span_context().span_id
    assert attempt.attributes["dagq.executor"] == "traced_actor"
