"""The `stream` phase of `dagq bench`: streamed node output, delivered.

1. Many nodes streaming at once (50 runs, 20 chunks/s each: 1,000 chunks/s), each run
   followed by its own SSE client on a real API process: emit -> client latency (the
   chunk carries its send time; one machine, one clock), chunks lost or out of order,
   and the machine's CPU time per 1,000 chunks (workers, API, Postgres and the clients
   together, from /proc/stat).
2. One node streaming as fast as it can: chunks/s sustained, from the database's clocks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from dagq.bench.api_procs import ApiProcesses
from dagq.bench.fleet import WorkerFleet
from dagq.bench.phases import percentiles
from dagq.errors import DagqError
from dagq.spec.workflow import WorkflowSpec, parse_spec

log = logging.getLogger("dagq.bench")

TENANT = "bench"
THREADS_PER_WORKER = 30  # 50 nodes stream at once: each holds a worker thread
API_READY_S = 60.0
WARM_UP_CHUNKS = 20  # 1 s at 20 chunks/s


def stream_spec(name: str, chunks: int, interval_s: float) -> WorkflowSpec:
    return parse_spec({"name": name, "nodes": {"llm": {
        "executor": "builtin.stream", "max_attempts": 1, "timeout_s": 3600,
        "params": {"chunks": chunks, "interval_s": interval_s, "text": "{i}@{t};"}}}})


def stream(b: Any, *, runs: int, chunks: int, burst_chunks: int) -> dict[str, Any]:
    """Both measurements on one fleet (2 x THREADS_PER_WORKER) and one API process."""
    fleet = WorkerFleet(b.url, processes=b.workers, threads=max(b.threads, THREADS_PER_WORKER),
                        log_dir=b.log_dir, name="bench-stream")
    with fleet, ApiProcesses(b.url, b.log_dir, name="bench-stream-api") as base:
        fleet.start()
        fleet.wait_ready(b.conn, b.q["alive_workers"])
        log.info("stream: %d runs x %d chunks at 20/s, %d SSE clients", runs, chunks, runs)
        many = _many(b, base, runs, chunks)
        log.info("stream: one node, %d chunks as fast as it can", burst_chunks)
        one = _burst(b, burst_chunks)
        fleet.stop()
    return {"many": many, "one_node": one}


def _many(b: Any, base: str, runs: int, chunks: int) -> dict[str, Any]:
    spec = stream_spec("bench-stream", chunks, 0.05)
    busy_before = _cpu_busy_s()
    started = time.monotonic()
    run_ids = [b.repo.submissions.submit_run(tenant=TENANT, spec=spec, inputs={}).run_id
               for _ in range(runs)]
    results = asyncio.run(_follow_all(base, run_ids))
    elapsed = time.monotonic() - started
    busy = _cpu_busy_s() - busy_before
    # The first second of each run is left out of the latencies: its chunks may be
    # sent before its SSE client has connected (then they arrive as a replay).
    latencies = sorted(ms for r in results for ms in r["latencies_ms"][WARM_UP_CHUNKS:])
    received = sum(len(r["latencies_ms"]) for r in results)
    return {
        "runs": runs, "chunks_per_run": chunks, "chunks": received, "seconds": round(elapsed, 2),
        "lost": runs * chunks - received, "out_of_order": sum(r["disorder"] for r in results),
        "duplicates": sum(r["duplicates"] for r in results),
        **percentiles(latencies),
        "cpu_s_per_1k_chunks": round(busy / (received / 1000), 3) if received else None,
        "cpu_cores": os.cpu_count(),
    }


async def _follow_all(base: str, run_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=len(run_ids) + 4)
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(120.0),
                                 limits=limits) as client:
        return await asyncio.gather(*(_follow(client, run_id) for run_id in run_ids))


async def _follow(client: httpx.AsyncClient, run_id: uuid.UUID) -> dict[str, Any]:
    """One SSE client: each chunk's delivery latency, in order, until the run ends."""
    latencies: list[float] = []
    seen: set[int] = set()
    last, disorder, duplicates = 0, 0, 0
    event = ""
    async with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
        if response.status_code != 200:
            raise DagqError(f"SSE for run {run_id}: HTTP {response.status_code}")
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "node_stream":
                now = time.time()
                chunk = json.loads(line[5:])
                index, _, sent = chunk["text"].rstrip(";").partition("@")
                latencies.append((now - float(sent)) * 1000)
                seq = chunk["seq"]
                duplicates += seq in seen
                disorder += seq < last
                seen.add(seq)
                last = max(last, seq)
    return {"latencies_ms": latencies, "disorder": disorder, "duplicates": duplicates}


def _burst(b: Any, chunks: int) -> dict[str, Any]:
    """One node streams `chunks` back to back: chunks written per second of the node's
    run time (its lease to its completion, database clock)."""
    spec = stream_spec("bench-stream-burst", chunks, 0.0)
    run_id = b.repo.submissions.submit_run(tenant=TENANT, spec=spec, inputs={}).run_id
    deadline = time.monotonic() + 300
    while b.one("run_status", {"run_id": run_id})["status"] in ("queued", "running"):
        if time.monotonic() > deadline:
            raise DagqError(f"the burst run {run_id} did not finish")
        time.sleep(0.2)
    span = b.one("stream_span", {"run_id": run_id})
    seconds = max(span["seconds"] or 0.0, 1e-6)
    return {"chunks": span["chunks"], "seconds": round(seconds, 3),
            "chunks_per_s": round(span["chunks"] / seconds)}


def _cpu_busy_s() -> float:
    """Busy CPU seconds of the whole machine so far (all cores, from /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(v) for v in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")
