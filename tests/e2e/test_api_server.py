"""The API as a real uvicorn process (`python -m dagq.api`) on 127.0.0.1: concurrent
idempotent submissions, SSE over a real socket with graceful shutdown, and a bounded
schemathesis run with every check over /openapi.json."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dagq import service
from dagq.spec.workflow import parse_spec
from dagq.store import Store
from tests.harness.drive import complete, drive

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FLOW = {"name": "e2e-flow", "nodes": {"a": {"executor": "builtin.noop"},
                                     "b": {"executor": "builtin.noop", "depends_on": ["a"]}}}
CLIENTS, PER_CLIENT, SHARED_KEYS = 50, 20, 10


class ApiServer:
    def __init__(self, db_url: str, log_path: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "DAGQ_DATABASE_URL": db_url, "DAGQ_AUTH": "on",
               "DAGQ_LOG_LEVEL": "WARNING", "DAGQ_POOL_SIZE": "10", "PYTHONPATH": str(ROOT)}
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dagq.api", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"API did not become ready:\n{self.logs()}")
            time.sleep(0.05)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"API ignored SIGTERM for {timeout}s:\n{self.logs()}") \
                    from None
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[ApiServer]:
    api = ApiServer(db_url, tmp_path / "api.log")
    try:
        yield api
    finally:
        if api.proc.poll() is None:
            api.proc.kill()
            api.proc.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class RawHttp:
    """A minimal keep-alive HTTP/1.1 JSON client on asyncio streams: the load generator
    shares two cores with the server and Postgres, so it must cost little CPU (httpx
    costs about as much per request as the server does)."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict) -> tuple[int, dict]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        payload = json.dumps(body).encode()
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.head}"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
            .encode() + payload)
        await self.writer.drain()
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status = int(head.split(" ", 2)[1])
        length = int(re.search(r"(?im)^content-length:\s*(\d+)", head).group(1))
        return status, json.loads(await self.reader.readexactly(length))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def submit_storm(port: int, key: str) -> tuple[list[tuple[int, dict]], list[float]]:
    """50 clients, 20 submissions each: half reuse 10 event keys shared by every client
    (same inputs), half are unique."""
    results: list[tuple[int, dict]] = []
    latencies: list[float] = []

    async def client(c: int) -> None:
        http = RawHttp(port, {"Authorization": f"Bearer {key}"})
        try:
            for i in range(PER_CLIENT):
                if i % 2 == 0:  # the same 10 keys (and inputs) in every client
                    body = {"workflow": "e2e-flow", "inputs": {"n": i // 2},
                            "event_key": f"shared-{i // 2}"}
                else:
                    body = {"workflow": "e2e-flow", "inputs": {"client": c, "i": i}}
                started = time.perf_counter()
                results.append(await http.post("/v1/runs", body))
                latencies.append(time.perf_counter() - started)
        finally:
            await http.close()

    await asyncio.gather(*(client(c) for c in range(CLIENTS)))
    return results, latencies


def server_side_quantiles(base: str, qs: tuple[float, ...]) -> list[float]:
    """Quantiles of POST /v1/runs from the API's own latency histogram (interpolated)."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets = []
    for family in text_string_to_metric_families(httpx.get(f"{base}/metrics").text):
        for s in family.samples:
            if s.name == "dagq_api_request_duration_seconds_bucket" \
                    and s.labels["route"] == "/v1/runs":
                buckets.append((float(s.labels["le"]), s.value))
    buckets.sort()
    total = buckets[-1][1]
    out = []
    for q in qs:
        rank, prev_le, prev_n = q * total, 0.0, 0.0
        for le, n in buckets:
            if n >= rank:
                span = le - prev_le if le != float("inf") else 0.0
                out.append(prev_le + span * ((rank - prev_n) / max(n - prev_n, 1e-9)))
                break
            prev_le, prev_n = le, n
    return out


def test_concurrent_idempotent_submissions(server: ApiServer, repo: Store, sql) -> None:
    admin = service.create_api_key(repo, "load", admin=True)
    registered = httpx.post(f"{server.base}/v1/workflows", json=FLOW,
                            headers={"Authorization": f"Bearer {admin}"})
    assert registered.status_code == 201
    key = service.create_api_key(repo, "load")
    started = time.perf_counter()
    results, latencies = asyncio.run(submit_storm(server.port, key))
    elapsed = time.perf_counter() - started
    statuses = Counter(status for status, _ in results)
    assert all(s < 500 for s in statuses), (statuses, server.logs())
    keyed = _runs_with_keys(sql)
    shared = [body for status, body in results if body.get("run_id") in keyed]
    unique = CLIENTS * PER_CLIENT // 2
    dup_keys = SHARED_KEYS
    assert statuses == {201: unique + dup_keys, 200: CLIENTS * PER_CLIENT // 2 - dup_keys}
    assert sql.execute("SELECT count(*) AS n FROM dagq.runs").fetchone()["n"] == \
        unique + dup_keys
    # Every submission with a shared key got the one run of that key.
    by_key = {}
    for body in shared:
        by_key.setdefault(body["run_id"], 0)
        by_key[body["run_id"]] += 1
    assert sorted(by_key.values()) == [CLIENTS * PER_CLIENT // 2 // dup_keys] * dup_keys
    p50, p99 = percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000
    s50, s99 = (v * 1000 for v in server_side_quantiles(server.base, (0.5, 0.99)))
    print(f"\nsubmit latency with {CLIENTS} concurrent clients x {PER_CLIENT} runs: "
          f"client p50 {p50:.1f} ms, p99 {p99:.1f} ms, mean "
          f"{statistics.mean(latencies) * 1000:.1f} ms; server-side p50 {s50:.1f} ms, "
          f"p99 {s99:.1f} ms; {len(latencies) / elapsed:.0f} submissions/s")
    assert server.stop() == 0


def _runs_with_keys(sql) -> set[str]:
    rows = sql.execute("SELECT id FROM dagq.runs WHERE event_key IS NOT NULL").fetchall()
    return {str(r["id"]) for r in rows}


def _read_frames(lines: Iterator[str], count: int) -> list[dict[str, str]]:
    frames: list[dict[str, str]] = []
    frame: dict[str, str] = {}
    for line in lines:
        if not line:
            if frame:
                frames.append(frame)
                frame = {}
                if len(frames) == count:
                    return frames
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(": ")
        frame[field] = value
    if frame:
        frames.append(frame)
    return frames


def test_sse_resume_over_a_socket_and_graceful_shutdown(server: ApiServer,
                                                       repo: Store) -> None:
    key = service.create_api_key(repo, "sse")
    headers = {"Authorization": f"Bearer {key}"}
    run_id = httpx.post(f"{server.base}/v1/runs", json={"workflow": FLOW},
                        headers=headers).json()["run_id"]
    url = f"{server.base}/v1/runs/{run_id}/events"
    with httpx.stream("GET", url, headers=headers, timeout=10) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        first = _read_frames(stream.iter_lines(), 1)
    assert first[0]["event"] == "run_queued"
    # Progress while nobody listens, then resume from the last id seen.
    [node] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    complete(repo, node.id, node.version, {})
    with httpx.stream("GET", url, headers={**headers, "Last-Event-ID": first[0]["id"]},
                      timeout=10) as stream:
        lines = stream.iter_lines()
        resumed = _read_frames(lines, 5)
        ids = [int(f["id"]) for f in first + resumed]
        assert ids == sorted(set(ids))
        assert [f["event"] for f in resumed] == [
            "node_queued", "run_started", "node_started", "node_succeeded", "node_queued"]
        # The run is still open: the stream waits. SIGTERM ends it cleanly and promptly.
        stopping = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        rest = list(lines)  # raises if the chunked body is cut off uncleanly
        assert time.monotonic() - stopping < 8
    assert [line for line in rest if line.startswith("id:")] == []
    assert server.stop() == 0, server.logs()


def _case_label(recorder: Any, case_id: str) -> str:
    """A stateful step's failure has no scenario label: the request it made, and the
    answer (what to look at first)."""
    interaction = recorder.interactions.get(case_id)
    if interaction is None:
        return "a stateful step"
    response = interaction.response
    answer = f" -> {response.status_code} {response.content[:200]!r}" if response else ""
    return f"{interaction.request.method} {interaction.request.uri}{answer}"


def test_schemathesis_all_checks_find_no_mismatch(server: ApiServer, repo: Store) -> None:
    """`schemathesis run --checks all` (every phase: coverage, fuzzing, stateful) through
    its Python engine, with the repository's schemathesis.toml and a bounded number of
    examples: no server error, no answer the schema does not describe, no schema-valid
    request refused (beyond that file's documented 422s), no schema-invalid one accepted,
    `Allow` right on 405s, and the SSE stream validated event by event."""
    admin = service.create_api_key(repo, "fuzz", admin=True)
    headers = {"Authorization": f"Bearer {admin}"}
    assert httpx.post(f"{server.base}/v1/workflows", json=FLOW,
                      headers=headers).status_code == 201
    # A finished run and a schedule, so that the routes of one run or one schedule are
    # reached with ids that exist too (and the run's event stream ends by itself).
    run_id = repo.submissions.submit_run(tenant="fuzz", spec=parse_spec(FLOW)).run_id
    drive(repo)
    schedule = httpx.post(f"{server.base}/v1/schedules", headers=headers,
                          json={"workflow": FLOW["name"], "cron": "0 3 * * *"}).json()
    outcome = _schemathesis_all_checks(server.base, headers, {
        "run_id": [str(run_id)], "schedule_id": [schedule["schedule_id"]]})
    print(f"\nschemathesis --checks all: {outcome['cases']} cases, "
          f"{outcome['scenarios']} scenarios")
    assert outcome["failures"] == [] and outcome["errors"] == [], \
        "\n".join(map(str, outcome["failures"] + outcome["errors"]))
    assert outcome["cases"] > 200  # it did run: every phase, every operation
    answers = outcome["answers"]
    assert answers[("GET", 200, "text/event-stream")] > 0, answers  # SSE validated
    assert answers[("OPTIONS", 405, "application/json")] > 0, answers  # Allow checked
    assert httpx.get(f"{server.base}/readyz").status_code == 200
    assert server.stop() == 0, server.logs()


def _schemathesis_all_checks(base: str, headers: dict[str, str],
                             ids: dict[str, list[str]]) -> dict[str, Any]:
    import tomllib

    import schemathesis
    from schemathesis.config import SchemathesisConfig
    from schemathesis.engine import Status, events, from_schema

    data = tomllib.loads((ROOT / "schemathesis.toml").read_text())
    data.update({
        # No cache: it would replay earlier runs' findings and write .schemathesis/.
        "seed": 20240612, "headers": headers, "request-timeout": 10,
        "cache": {"enabled": False},
        "generation": {"max-examples": 12, "database": "none"},
        "dictionaries": {name: {"values": values} for name, values in ids.items()},
        "parameters": {f"path.{name}": {"dictionary": name, "probability": 0.5}
                       for name in ids},
    })
    config = SchemathesisConfig.from_dict(data)
    config.projects.override.checks.update(included_check_names=["all"])  # --checks all
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", config=config)
    outcome: dict[str, Any] = {"failures": [], "errors": [], "cases": 0, "scenarios": 0,
                               "answers": Counter()}
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            outcome["scenarios"] += 1
            outcome["cases"] += len(event.recorder.cases)
            outcome["answers"].update(
                (i.request.method, i.response.status_code,
                 i.response.headers.get("content-type", [""])[0].split(";")[0])
                for i in event.recorder.interactions.values() if i.response is not None)
            outcome["failures"] += [
                f"{event.label or _case_label(event.recorder, case_id)}: {check.name}: "
                f"{check.failure_info.failure.title}"
                for case_id, checks in event.recorder.checks.items() for check in checks
                if check.status == Status.FAILURE and check.failure_info is not None]
        elif isinstance(event, events.NonFatalError):
            outcome["errors"].append(f"{event.label}: {event.info.message}")
        elif isinstance(event, events.FatalError):
            raise event.exception
    return outcome
