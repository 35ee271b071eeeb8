"""Trace parentage across processes (issue 31, item 1): the API and two workers as real
processes export over OTLP/HTTP to a receiver on 127.0.0.1 (protobuf decoded with
opentelemetry-proto). A fan-out run under the caller's traceparent, with one node that
fails once (a retry) and one that SIGKILLs its worker once (a reclaimed attempt): the
submit span is the caller's child, every attempt of every node is the submit's child in
the same trace, attempt N links to attempt N-1, the failed attempt is ERROR, the dead
worker's attempt is recorded (reclaimed, ERROR) by the worker that ran the next one.
The spans are rendered as the waterfall docs/observability.md shows."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.harness.e2e import ready, registered
from tests.harness.otlp import OtlpReceiver
from tests.harness.procs import ROOT, free_port, wait_for, wait_for_run

pytestmark = pytest.mark.e2e

CALLER_TRACE, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
FAST = {"DAGQ_LEASE_TTL_S": "2", "DAGQ_HEARTBEAT_S": "0.5"}
FAN_OUT = {
    "name": "traced-fan-out",
    "defaults": {"max_attempts": 4, "backoff": {"initial_s": 0.1, "max_s": 0.2}},
    "nodes": {
        "fetch": {"executor": "builtin.echo"},
        "summarize": {"executor": "builtin.sleep", "depends_on": ["fetch"],
                      "params": {"seconds": 0.05}},
        "flaky": {"executor": "builtin.fail", "depends_on": ["fetch"], "params": {"times": 1}},
        # on a queue of its own: the worker it kills runs nothing else (a killed process
        # loses the spans it had not exported yet, those of finished attempts included)
        "crashy": {"executor": "builtin.crash", "depends_on": ["fetch"], "queue": "crashq",
                   "params": {"times": 1}},
        "merge": {"executor": "builtin.merge", "depends_on": ["summarize", "flaky", "crashy"]},
    },
}


def otel_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none"}


def test_a_runs_trace_spans_the_api_and_the_workers(fleet, repo, sql, tmp_path) -> None:
    with OtlpReceiver() as receiver:
        env = otel_env(receiver)
        fleet.start_sweeper(**env)
        fleet.start(threads=2, queues="default", **FAST, **env)
        for _ in range(2):  # the first to take crashy dies; the other runs attempt 2
            fleet.start(threads=1, queues="crashq", **FAST, **env)
        port = free_port()
        fleet.start_api(port, **env)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: ready(url), 60, "the API")
        registered(sql, "builtin.crash")
        response = httpx.post(f"{url}/v1/runs", json={"workflow": FAN_OUT},
                              headers={"traceparent": CALLER}, timeout=30)
        assert response.status_code == 201, response.text
        run_id = response.json()["run_id"]
        assert wait_for_run(repo, run_id, timeout=120).status == "succeeded", fleet.logs()
        attempts = {r["node_key"]: r["attempts"] for r in sql.execute(
            "SELECT node_key, attempts FROM dagq.node_tasks WHERE run_id = %s",
            (run_id,)).fetchall()}
        fleet.stop_all()  # a clean exit flushes each process's batch of spans
        expected = sum(attempts.values()) + 1
        wait_for(lambda: len([s for s in receiver.spans()
                              if s["trace_id"] == CALLER_TRACE]) >= expected, 30,
                 f"{expected} spans")
        spans = [s for s in receiver.spans() if s["trace_id"] == CALLER_TRACE]

    (submit,) = [s for s in spans if s["name"] == "dagq.submit"]
    assert submit["parent_span_id"] == CALLER_SPAN and submit["service"] == "dagq-api"
    nodes = [s for s in spans if s["name"].startswith("node ")]
    assert Counter(s["attributes"]["dagq.node_key"] for s in nodes) == Counter(attempts)
    assert attempts["flaky"] >= 2 and attempts["crashy"] >= 2
    by_attempt = {(s["attributes"]["dagq.node_key"], s["attributes"]["dagq.attempt"]): s
                  for s in nodes}
    assert len(by_attempt) == len(nodes)  # one span per attempt, never two
    for (key, attempt), span in by_attempt.items():
        assert span["parent_span_id"] == submit["span_id"], (key, attempt)  # never nested
        assert span["service"] == "dagq-worker"
        assert span["attributes"]["dagq.run_id"] == run_id
        assert span["attributes"]["dagq.tenant"] == "default"
        assert span["attributes"]["dagq.queue"] == ("crashq" if key == "crashy" else "default")
        if attempt > 1:
            (link,) = span["links"]
            assert link["span_id"] == by_attempt[(key, attempt - 1)]["span_id"]
            assert link["trace_id"] == CALLER_TRACE
    failed = by_attempt[("flaky", 1)]
    assert failed["status"]["code"] == 2 and "exception" in [e["name"] for e in failed["events"]]
    lost = by_attempt[("crashy", 1)]
    assert lost["attributes"].get("dagq.reclaimed") is True and lost["status"]["code"] == 2
    assert by_attempt[("crashy", attempts["crashy"])]["status"]["code"] != 2

    (tmp_path / "spans.json").write_text(json.dumps(spans))
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "trace_waterfall.py"),
                           str(tmp_path / "spans.json"), "-o", str(tmp_path / "waterfall.html")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    page = Path(tmp_path / "waterfall.html").read_text()
    assert "node crashy  #1 (reclaimed)" in page and "dagq.submit" in page
