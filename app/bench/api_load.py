"""The `api` phase of `dagq bench`: the front door under load.

50 and then 200 concurrent keep-alive HTTP clients post one-node runs to `POST /v1/runs`
(a registered workflow, by name) on real API processes while the workers drain them:
submits/s (201s per second), p50/p99 latency, and the ratio to the in-process submit
rate of the same bench (`flat.submit.runs_per_s`). The load comes from Debian's `wrk`
(compiled, so the client is not the limit; `./scripts/test` installs it) or, without it,
an asyncio httpx client, which the report names.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import subprocess
import tempfile
import time
from typing import Any

import httpx

from dagq.bench.api_procs import ApiProcesses
from dagq.bench.phases import percentiles
from dagq.runtime.procs import default_api_processes
from dagq.spec.workflow import parse_spec

log = logging.getLogger("dagq.bench")

WORKFLOW = "bench-api"
BODY = json.dumps({"workflow": WORKFLOW, "inputs": {}})
WRK_SCRIPT = f"""wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def api_load(b: Any, *, clients: tuple[int, ...], seconds: float,
             in_process_runs_per_s: float | None) -> dict[str, Any]:
    """Each client count against one set of API processes, workers draining."""
    b.repo.workflows.register_workflow(parse_spec(
        {"name": WORKFLOW, "nodes": {"n": {"executor": "builtin.noop"}}}))
    processes = default_api_processes()
    tool = "wrk" if shutil.which("wrk") else "httpx"
    fleet = b.fleet("bench-api")
    results: dict[str, Any] = {"processes": processes, "client": tool, "seconds": seconds}
    with fleet, ApiProcesses(b.url, b.log_dir, name="bench-api", processes=processes) as base:
        fleet.start()
        fleet.wait_ready(b.conn, b.q["alive_workers"])
        for count in clients:
            log.info("api: %d clients posting for %.0fs (%s), %d API process(es)", count,
                     seconds, tool, processes)
            load = _wrk if tool == "wrk" else _httpx
            figures = load(base, count, seconds)
            if in_process_runs_per_s:
                figures["vs_in_process"] = round(figures["submits_per_s"]
                                                 / in_process_runs_per_s, 2)
            results[f"c{count}"] = figures
        fleet.stop()
    return results


def _wrk(base: str, clients: int, seconds: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT)
        script.flush()
        done = subprocess.run(
            ["wrk", f"-t{min(2, clients)}", f"-c{clients}", f"-d{max(1, round(seconds))}s",
             "--latency", "-s", script.name, f"{base}/v1/runs"],
            capture_output=True, text=True, timeout=seconds + 60, check=True)
    return parse_wrk(done.stdout, clients)


def parse_wrk(out: str, clients: int) -> dict[str, Any]:
    """wrk's --latency report as figures (every response counted; non-2xx apart)."""
    def latency(pct: str) -> float:
        value, unit = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M).groups()
        return round(float(value) * UNITS_MS[unit], 2)

    span = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    requests = int(span.group(1))
    elapsed_s = float(span.group(2)) * UNITS_MS[span.group(3)] / 1000
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"clients": clients, "requests": requests, "errors": errors,
            "socket_errors": socket_errors.group(1).strip() if socket_errors else None,
            "submits_per_s": round((requests - errors) / elapsed_s),
            "p50_ms": latency("50"), "p99_ms": latency("99")}


def _httpx(base: str, clients: int, seconds: float) -> dict[str, Any]:
    return asyncio.run(_httpx_load(base, clients, seconds))


async def _httpx_load(base: str, clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0) as client:
        stop_at = time.monotonic() + seconds

        async def one_client() -> None:
            nonlocal errors
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                response = await client.post("/v1/runs", content=BODY,
                                             headers={"Content-Type": "application/json"})
                if response.status_code == 201:
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    errors += 1

        began = time.monotonic()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.monotonic() - began
    figures = percentiles(sorted(latencies))
    return {"clients": clients, "requests": len(latencies) + errors, "errors": errors,
            "socket_errors": None, "submits_per_s": round(len(latencies) / elapsed),
            "p50_ms": figures["p50_ms"], "p99_ms": figures["p99_ms"]}
