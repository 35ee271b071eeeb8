"""`dagq bench`: dagq's throughput and latency next to a raw-SQL ceiling, in one run.

A fresh database (on an embedded server in a temporary directory, or a scratch database
on the DAGQ_DATABASE_URL server), synchronous_commit on. Each drain phase is sized to
last about 10 s on the reference machine and repeated (`--repeat`, 3): the report shows
the median repetition with the min and max beside it, so two commits can be compared
with their noise in view. The phases are in `phases`, the worker processes in `fleet`;
docs/performance.md explains the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from dagq import __version__
from dagq.bench import machine
from dagq.bench import phases as ph
from dagq.bench.api_load import api_load
from dagq.bench.bulk import bulk
from dagq.bench.costs import find_postmaster
from dagq.bench.deliveries import deliveries
from dagq.bench.dramatiq import dramatiq_phase
from dagq.bench.fairness import fairness
from dagq.bench.report import print_fairness, print_report
from dagq.bench.stream import stream
from dagq.bench.subflows import subflows
from dagq.bench.via import via_pgbouncer, via_proxy
from dagq.bench.waiting import flat_beside_waits
from dagq.config import Settings
from dagq.errors import DagqError
from dagq.runtime.db import open_pool
from dagq.runtime.migrate import migrate
from dagq.store import Store

log = logging.getLogger("dagq.bench")


@dataclass(frozen=True)
class Sizes:
    ceiling_single_rows: int
    ceiling_batch_rows: int
    flat_runs: int
    dag_runs: int
    latency_single: int
    latency_dag: int
    big_rows: int
    stream_runs: int
    stream_chunks: int  # per run, at 20/s
    stream_burst: int  # one node, as fast as it can
    waiting_runs: int  # runs waiting beside a flat drain
    api_seconds: float  # of load per client count (50, 200) on the API
    subflow_parents: int  # parent runs mapping a sub-workflow over 10 items
    repeat: int
    min_drain_s: float  # a shorter drain is logged as noisy
    dramatiq_sends: int = 10_000  # actor.send() from one producer, one by one
    # then in groups of 500; the drain takes both (40,000: >= 10 s on the reference
    # machine, as the other drains; 20,000 in ~5 s were too noisy to compare with Redis)
    dramatiq_grouped: int = 30_000
    dramatiq_latency: int = 200  # idle send -> start samples
    fairness_runs: int = 100_000  # the big tenant's backlog (--fairness)
    bulk_runs: int = 10_000  # cancelled in bulk beside a drain (--phase bulk)
    bulk_drain_runs: int = 100_000  # the flat backlog draining meanwhile
    meta_runs: int = 1_000_000  # searched by metadata
    meta_samples: int = 1_000  # searches timed (store, then HTTP)
    delivery_runs: int = 10_000  # run completions per drain of --phase deliveries
    delivery_paced: int = 2_000  # runs submitted at a steady rate (deliveries' latency)


# Drains sized for >= 10 s each on the reference machine (2 cores: ~7,000 nodes/s flat,
# ~6,000 node tasks/s in 1 -> 10 -> 1 DAGs of 12 nodes); 1-2 s drains were too noisy to
# compare commits (three runs gave 4,164-5,909 nodes/s).
FULL = Sizes(20_000, 100_000, 75_000, 5_000, 200, 50, 1_000_000, 50, 200, 200_000, 10_000,
             api_seconds=10.0, subflow_parents=200, repeat=3, min_drain_s=10.0)
QUICK = Sizes(2_000, 2_000, 300, 20, 20, 5, 100_000, 5, 30, 5_000, 200, api_seconds=2.0,
              subflow_parents=10, repeat=2, min_drain_s=0.0, dramatiq_sends=300,
              dramatiq_grouped=700, dramatiq_latency=10, fairness_runs=2_000,
              bulk_runs=1_000, bulk_drain_runs=30_000, meta_runs=100_000, meta_samples=200,
              delivery_runs=300, delivery_paced=100)
API_CLIENTS = (50, 200)

# The figures the engine aims for on the reference machine (2 cores): shown beside
# the measurements, never asserted.
TARGETS = {
    "dag_node_tasks_per_s": ">= 3,500", "flat_nodes_per_s": ">= 7,000",
    "latency_dag_p50": "<= 10 ms", "latency_dag_p99": "<= 25 ms",
    "latency_single_p50": "<= 3 ms", "big_ratio": ">= 0.80",
    "stream_p50": "<= 20 ms", "stream_p99": "<= 100 ms",
    "api_c50_submits_per_s": ">= 2,000", "api_c50_p99": "<= 50 ms",
    "dramatiq_sends_per_s": ">= 3,000", "dramatiq_latency_p50": "<= 3 ms",
    "dramatiq_drain_vs_redis": ">= 1.00",
    "fairness_small_p99": "<= 50 ms", "fairness_drain_ratio": ">= 0.90",
}


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    if (error := _argument_error(args)) is not None:
        print(f"dagq: error: {error}", file=sys.stderr)
        return 2
    if args.compare:
        from dagq.bench.compare import run_compare

        passed = [f"--workers={args.workers}", f"--threads={args.threads}",
                  *(["--quick"] if args.quick else []), *(["--big"] if args.big else []),
                  # (a REF older than the phase asked for fails with argparse's message)
                  *([f"--phase={args.phase}"] if args.phase else []),
                  *([f"--repeat={args.repeat}"] if args.repeat is not None else [])]
        return run_compare(args, passed)
    sizes = QUICK if args.quick else FULL
    if args.repeat is not None:
        sizes = Sizes(**{**asdict(sizes), "repeat": args.repeat})
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM cleans up like Ctrl-C
    began = time.monotonic()
    load_before = machine.load_average()
    try:
        database, results = _bench_in_scratch_database(args, settings, sizes)
    finally:
        signal.signal(signal.SIGTERM, previous)
    results = {
        "dagq_version": __version__,
        "git": machine.code_version(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "dagq " + " ".join(sys.argv[1:]),
        "machine": {**machine.machine_facts(), "load_average_1m": {
            "before": load_before, "after": machine.load_average()}},
        "database": database,
        "config": {"workers": args.workers, "threads": args.threads, "quick": args.quick,
                   "via": args.via,
                   "big": args.big, "fairness": args.fairness, "phase": args.phase,
                   "sizes": asdict(sizes)},
        **results,
        "elapsed_s": round(time.monotonic() - began, 1),
    }
    if args.phase in ("subflows", "bulk", "deliveries"):
        print(json.dumps(results[args.phase], indent=2, default=str))
    elif args.phase == "fairness":
        print_fairness(results, TARGETS)
    else:
        print_report(results, TARGETS)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"figures written to {args.json_path}", file=sys.stderr)
    return 0


def _argument_error(args: argparse.Namespace) -> str | None:
    if args.workers < 1 or args.threads < 1:
        return "--workers and --threads must be at least 1"
    if args.repeat is not None and args.repeat < 1:
        return "--repeat must be at least 1"
    if args.compare and args.rounds < 1:
        return "--rounds must be at least 1"
    return None


def _bench_in_scratch_database(args: argparse.Namespace, settings: Settings,
                               sizes: Sizes) -> tuple[dict[str, Any], dict[str, Any]]:
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="dagqb-", dir="/tmp"))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        url, database = machine.scratch_database(settings, tmp, stack)
        migrate(url)
        repo = Store(open_pool(url, size=8, name="bench"))
        stack.callback(repo.close)
        conn = stack.enter_context(ph.open_bookkeeping(url))
        q = ph.bench_queries()
        database.update(conn.execute(q["server_facts"]).fetchone() or {})
        logs = tmp / "logs"
        logs.mkdir()
        bench = ph.Bench(url=url, q=q, repo=repo, conn=conn, workers=args.workers,
                         threads=args.threads, log_dir=logs,
                         postmaster=find_postmaster(conn, q))
        try:
            results = {} if args.phase in ("fairness", "bulk") else _measure(
                bench, sizes, big=args.big, phase=args.phase, quick=args.quick)
            if args.via and "flat" in results:
                measure_via = via_pgbouncer if args.via == "pgbouncer" else functools.partial(
                    via_proxy, delay_s=args.proxy_delay_ms / 1000)
                results[f"via_{args.via}"] = measure_via(
                    bench, repeat=sizes.repeat, flat_runs=sizes.flat_runs,
                    dag_runs=sizes.dag_runs, latency_samples=sizes.latency_single,
                    direct_flat=results["flat"]["nodes_per_s"],
                    direct_dag=results["dag"]["node_tasks_per_s"])
            if args.phase == "bulk":
                results["bulk"] = bulk(
                    bench, runs=sizes.bulk_runs, drain_runs=sizes.bulk_drain_runs,
                    meta_runs=sizes.meta_runs, samples=sizes.meta_samples)
            if args.phase == "fairness" or (args.fairness and args.phase is None):
                log.info("fairness: %d one-node runs of one tenant alone, then beside a "
                         "small tenant", sizes.fairness_runs)
                results["fairness"] = fairness(bench, runs=sizes.fairness_runs)
            return database, results
        except psycopg.Error as exc:
            raise DagqError(f"bench failed: {type(exc).__name__}: {exc}") from exc


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _one_phase(bench: ph.Bench, sizes: Sizes, phase: str | None) -> dict[str, Any] | None:
    """The figures of a `--phase` that runs alone (None: not one of those)."""
    if phase == "dramatiq":
        return {"dramatiq": _dramatiq(bench, sizes)}
    if phase == "subflows":
        return {"subflows": subflows(bench, parents=sizes.subflow_parents)}
    if phase == "deliveries":
        return {"deliveries": deliveries(bench, runs=sizes.delivery_runs,
                                         paced_runs=sizes.delivery_paced,
                                         repeat=sizes.repeat)}
    if phase == "api":  # both configurations, alternating; no in-process submit rate
        return {"api": api_load(bench, clients=API_CLIENTS, seconds=sizes.api_seconds,
                                in_process_runs_per_s=None, rounds=sizes.repeat)}
    return None


def _measure(bench: ph.Bench, sizes: Sizes, *, big: bool, phase: str | None = None,
             quick: bool = False) -> dict[str, Any]:
    if (alone := _one_phase(bench, sizes, phase)) is not None:
        return alone
    log.info("ceiling: %d rows one per transaction, %d rows %d per statement, %d "
             "connections", sizes.ceiling_single_rows, sizes.ceiling_batch_rows,
             ph.CEILING_BATCH, ph.CEILING_CONNECTIONS)
    single = ph.ceiling(bench, sizes.ceiling_single_rows, 1)
    batch = ph.ceiling(bench, sizes.ceiling_batch_rows, ph.CEILING_BATCH)
    notify = ph.ceiling(bench, sizes.ceiling_single_rows, 1, notify=True)
    flats: list[dict[str, Any]] = []
    dags: list[dict[str, Any]] = []
    for i in range(sizes.repeat):  # flat and DAG alternate, so drift touches both
        log.info("flat %d/%d: %d one-node runs, %d workers x %d threads", i + 1,
                 sizes.repeat, sizes.flat_runs, bench.workers, bench.threads)
        flats.append(_long_enough(ph.flat(bench, sizes.flat_runs, f"bench-flat-{i}"),
                                  sizes))
        log.info("dag %d/%d: %d runs of 1 -> %d -> 1", i + 1, sizes.repeat, sizes.dag_runs,
                 ph.DAG_WIDTH)
        dags.append(_long_enough(ph.dag(bench, sizes.dag_runs, f"bench-dag-{i}"), sizes))
    for r in flats:
        _against_ceiling(r, r["nodes_per_s"], batch)
    for r in dags:
        _against_ceiling(r, r["node_tasks_per_s"], batch)
    flat = _median_repetition(flats, lambda r: r["nodes_per_s"],
                              ("nodes_per_s", "avg_lease_batch", "seconds"))
    dag = _median_repetition(dags, lambda r: r["node_tasks_per_s"],
                             ("node_tasks_per_s", "runs_per_s", "avg_lease_batch", "seconds"))
    log.info("latency: %d single-node runs, then %d fan-out DAGs, one at a time",
             sizes.latency_single, sizes.latency_dag)
    latency, latency_memory = ph.latency(bench, sizes.latency_single, sizes.latency_dag)
    memory = [m for r in flats + dags for m in r["worker_memory"]] + latency_memory
    core = {"ceiling": {"single": single, "batch": batch, "single_notify": notify},
            "flat": flat, "dag": dag, "latency": latency,
            "ratios": _ratios(flat, dag, None, single, batch),
            "worker_rss": _rss_summary(memory)}
    if phase == "core":
        return core
    streamed = stream(bench, runs=sizes.stream_runs, chunks=sizes.stream_chunks,
                      burst_chunks=sizes.stream_burst)
    beside_waits = flat_beside_waits(bench, waiting_runs=sizes.waiting_runs,
                                     runs=sizes.flat_runs, flat_nodes_per_s=flat["nodes_per_s"])
    sub = subflows(bench, parents=sizes.subflow_parents)
    front_door = api_load(bench, clients=API_CLIENTS, seconds=sizes.api_seconds,
                          in_process_runs_per_s=flat["submit"]["runs_per_s"])
    # Not with --quick (its smoke runs stay short): `--quick --phase dramatiq` runs it.
    messages = None if quick else _dramatiq(bench, sizes)
    grown = None
    if big:
        log.info("big: %d finished node rows and events, then flat again", sizes.big_rows)
        grown = ph.big(bench, sizes.big_rows, sizes.flat_runs, flat["nodes_per_s"])
        _against_ceiling(grown["flat"], grown["nodes_per_s"], batch)
    return {**core, "stream": streamed, "api": front_door, "waiting": beside_waits,
            "dramatiq": messages, "subflows": sub,
            "ratios": _ratios(flat, dag, grown, single, batch), "big": grown}


def _dramatiq(bench: ph.Bench, sizes: Sizes) -> dict[str, Any]:
    log.info("dramatiq: %d actor.send() from one producer and %d in groups, drained by %d "
             "workers x %d threads; %d idle sends", sizes.dramatiq_sends,
             sizes.dramatiq_grouped, bench.workers, bench.threads, sizes.dramatiq_latency)
    return dramatiq_phase(bench, sends=sizes.dramatiq_sends, grouped=sizes.dramatiq_grouped,
                          latency_samples=sizes.dramatiq_latency)


def _long_enough(result: dict[str, Any], sizes: Sizes) -> dict[str, Any]:
    if result["seconds"] < sizes.min_drain_s:
        log.warning("a drain lasted %.1fs (< %.0fs): its figure is noisy on this machine",
                    result["seconds"], sizes.min_drain_s)
    return result


def _median_repetition(results: list[dict[str, Any]], key: Callable[[dict[str, Any]], float],
                       figures: tuple[str, ...]) -> dict[str, Any]:
    """The repetition whose headline figure is the median (the low median for an even
    count), with every repetition's figures under "repeats" as median/min/max/values."""
    ordered = sorted(results, key=key)
    chosen = ordered[(len(ordered) - 1) // 2]
    repeats = {name: _spread_of([r[name] for r in results]) for name in figures}
    if all("costs" in r for r in results):  # the cost figures each repetition measured
        spreads = {name: _spread_of([r["costs"].get(name) for r in results])
                   for name in COST_FIGURES}
        costs = {**chosen["costs"], "repeats": {k: v for k, v in spreads.items() if v}}
        chosen = {**chosen, "costs": costs}
    return {**chosen, "repeats": repeats}


def _spread_of(values: list[Any]) -> dict[str, Any]:
    """median/min/max/values of the measured values (None: not measured), or {}."""
    measured = [v for v in values if v is not None]
    if not measured:
        return {}
    return {"median": statistics.median(measured), "min": min(measured),
            "max": max(measured), "values": measured}


# The per-node cost figures (costs.py) whose every repetition is kept, as the rates'.
COST_FIGURES = ("wal_records_per_node", "wal_fpi_per_node", "wal_bytes_per_node",
                "postgres_cpu_ms_per_node", "worker_cpu_ms_per_node", "ceiling_fraction")


def _against_ceiling(result: dict[str, Any], rate: float, batch: dict[str, Any]) -> None:
    """The drain's rate as a fraction of this run's 100 rows/statement ceiling, beside
    its other per-node costs."""
    result["costs"]["ceiling_fraction"] = round(rate / batch["jobs_per_s"], 4)


def _ratios(flat: dict[str, Any], dag: dict[str, Any], grown: dict[str, Any] | None,
            single: dict[str, Any], batch: dict[str, Any]) -> dict[str, float]:
    def ratio(value: float, ceiling: dict[str, Any]) -> float:
        return round(value / ceiling["jobs_per_s"], 3)

    ratios = {
        "flat_vs_ceiling_single": ratio(flat["nodes_per_s"], single),
        "flat_vs_ceiling_batch": ratio(flat["nodes_per_s"], batch),
        "dag_vs_ceiling_single": ratio(dag["node_tasks_per_s"], single),
        "dag_vs_ceiling_batch": ratio(dag["node_tasks_per_s"], batch),
    }
    if grown is not None:
        ratios["big_flat_vs_ceiling_batch"] = ratio(grown["nodes_per_s"], batch)
        ratios["big_vs_empty"] = grown["ratio_to_empty"]
    return ratios


def _rss_summary(memory: list[dict[str, Any]]) -> dict[str, Any]:
    def largest(key: str) -> int | None:
        values = [m[key] for m in memory if m[key] is not None]
        return max(values) if values else None

    return {
        "start_kb": largest("start_rss_kb"), "end_kb": largest("end_rss_kb"),
        "peak_kb": largest("peak_hwm_kb"),
        "growth_kb_per_1k_nodes": largest("growth_kb_per_1k_nodes"),
        "second_half_growth_kb_per_1k_nodes": largest("second_half_growth_kb_per_1k_nodes"),
        "processes": memory,
    }
