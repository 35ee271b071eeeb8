"""The `api` phase of `dagq bench`: the front door under load.

50 and then 200 concurrent keep-alive HTTP clients post one-node runs to `POST /v1/runs`
(a registered workflow, by name) on real API processes while the workers drain them:
submits/s (201s per second), p50/p99 latency, the API processes' CPU per submit (from
/proc: the figure a busy machine disturbs least) and the ratio to the in-process submit
rate of the same bench (`flat.submit.runs_per_s`). Twice: in the bench's own
configuration and as `dagq up` deploys it (api_procs.FrontDoor), alternating `rounds`
times (the figures: the median round, with every round under "repeats"). The load comes
from Debian's `wrk` (compiled, so the client is not the limit; `./scripts/test` installs
it) or, without it, an asyncio httpx client, which the report names.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from typing import Any

import httpx

from dagq import service
from dagq.bench.api_procs import BENCH_CONFIG, DEPLOYED, ApiProcesses, FrontDoor
from dagq.bench.phases import percentiles, wait_drained
from dagq.bench.procstat import ticks_delta_ms, tree_ticks
from dagq.runtime.procs import default_api_processes
from dagq.spec.workflow import parse_spec

log = logging.getLogger("dagq.bench")

WORKFLOW = "bench-api"
KEY_TENANT = "bench-api"  # the deployed front door's key (not an admin)
BODY = json.dumps({"workflow": WORKFLOW, "inputs": {}})
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
SPREAD = ("submits_per_s", "p50_ms", "p99_ms", "api_cpu_ms_per_submit", "cpu_ms_per_submit",
          "cpu_bound_submits_per_s")


def wrk_script(key: str | None) -> str:
    """wrk's Lua: POST BODY, with the key as a bearer token when there is one."""
    lines = ['wrk.method = "POST"', f"wrk.body = '{BODY}'",
             'wrk.headers["Content-Type"] = "application/json"']
    if key is not None:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {key}"')
    return "\n".join(lines) + "\n"


def api_load(b: Any, *, clients: tuple[int, ...], seconds: float,
             in_process_runs_per_s: float | None, rounds: int = 1) -> dict[str, Any]:
    """Each client count against each configuration's processes, workers draining; the
    bench's configuration at the top level (as before 0.3), `dagq up`'s under "deployed"."""
    b.repo.workflows.register_workflow(parse_spec(
        {"name": WORKFLOW, "nodes": {"n": {"executor": "builtin.noop"}}}))
    key = service.create_api_key(b.repo, KEY_TENANT)  # through the store, as the CLI does
    processes = default_api_processes()  # what `dagq up` starts on this machine
    tool = "wrk" if shutil.which("wrk") else "httpx"
    measured: dict[str, dict[int, list[dict[str, Any]]]] = {
        c.name: {n: [] for n in clients} for c in (BENCH_CONFIG, DEPLOYED)}
    for round_no in range(rounds):  # A B A B: the machine's drift touches both
        for config in (BENCH_CONFIG, DEPLOYED):
            log.info("api %d/%d, %s (%s): %s clients posting for %.0fs each (%s), %d API "
                     "process(es)", round_no + 1, rounds, config.name, config.describe,
                     "/".join(map(str, clients)), seconds, tool, processes)
            figures = _one_config(b, config, clients, seconds, tool, processes,
                                  key if config.auth else None)
            for count in clients:
                measured[config.name][count].append(figures[count])
    results: dict[str, Any] = {"processes": processes, "client": tool, "seconds": seconds,
                               "rounds": rounds, "config": BENCH_CONFIG.describe}
    for config in (BENCH_CONFIG, DEPLOYED):
        summary = {f"c{n}": median_round(measured[config.name][n], in_process_runs_per_s)
                   for n in clients}
        if config is BENCH_CONFIG:
            results.update(summary)
        else:
            results["deployed"] = {"processes": processes, "config": config.describe,
                                   **summary}
    return results


def _one_config(b: Any, config: FrontDoor, clients: tuple[int, ...], seconds: float,
                tool: str, processes: int, key: str | None) -> dict[int, dict[str, Any]]:
    """One configuration's processes and workers, each client count in turn; then the
    workers finish what was submitted, so the next configuration starts empty."""
    # The workers as `dagq up` runs them too: its log level (an empty value: unset).
    fleet = b.fleet(f"bench-api-{config.name}",
                    env={"DAGQ_LOG_LEVEL": config.env["DAGQ_LOG_LEVEL"]})
    api = ApiProcesses(b.url, b.log_dir, name=f"bench-api-{config.name}",
                       processes=processes, config=config)
    figures: dict[int, dict[str, Any]] = {}
    with fleet, api as base:
        fleet.start()
        fleet.wait_ready(b.conn, b.q["alive_workers"])
        load = _wrk if tool == "wrk" else _httpx
        groups = {"api": api.api_pids, "workers": fleet.pids(),
                  "postgres": [b.postmaster] if b.postmaster else [],
                  "sweeper": api.other_pids}
        for count in clients:
            before = {name: tree_ticks(pids) for name, pids in groups.items()}
            figures[count] = load(base, count, seconds, key)
            after = {name: tree_ticks(pids) for name, pids in groups.items()}
            figures[count].update(cpu_per_submit(
                {name: ticks_delta_ms(before[name], after[name]) for name in groups},
                figures[count]["requests"]))
        wait_drained(b, WORKFLOW, fleet)
        fleet.stop()
    return figures


def cpu_per_submit(spent_ms: dict[str, float | None], requests: int) -> dict[str, Any]:
    """CPU ms per submit of each process group (None: not measured) over one load, their
    sum, and the submits/s this machine's cores could give if that sum were all they did
    (the workers drain meanwhile: their share is the drain of what was submitted)."""
    per = {f"{name}_cpu_ms_per_submit": None if ms is None else round(ms / max(requests, 1), 3)
           for name, ms in spent_ms.items()}
    measured = [v for v in per.values() if v is not None]
    total = round(sum(measured), 3) if measured else None
    cores = os.cpu_count() or 1
    return {**per, "cpu_ms_per_submit": total,
            "cpu_bound_submits_per_s": round(cores * 1000 / total) if total else None}


def median_round(rounds: list[dict[str, Any]], in_process_runs_per_s: float | None
                 ) -> dict[str, Any]:
    """The round with the median submits/s (the low median of an even count), with
    every round's SPREAD figures under "repeats" (median/min/max/values)."""
    ordered = sorted(rounds, key=lambda r: r["submits_per_s"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    if in_process_runs_per_s:
        chosen["vs_in_process"] = round(chosen["submits_per_s"] / in_process_runs_per_s, 2)
    repeats: dict[str, Any] = {}
    for name in SPREAD:
        values = [r[name] for r in rounds if r.get(name) is not None]
        if values:
            repeats[name] = {"median": statistics.median(values), "min": min(values),
                             "max": max(values), "values": values}
    chosen["repeats"] = repeats
    return chosen


def _wrk(base: str, clients: int, seconds: float, key: str | None) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(wrk_script(key))
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


def _httpx(base: str, clients: int, seconds: float, key: str | None) -> dict[str, Any]:
    return asyncio.run(_httpx_load(base, clients, seconds, key))


async def _httpx_load(base: str, clients: int, seconds: float,
                      key: str | None) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0) as client:
        stop_at = time.monotonic() + seconds

        async def one_client() -> None:
            nonlocal errors
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                response = await client.post("/v1/runs", content=BODY, headers=headers)
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
