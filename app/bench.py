"""`dagq bench`: dagq's throughput and latency next to a raw-SQL ceiling, in one run.

A fresh database (on an embedded server in a temporary directory, or a scratch database
on the DAGQ_DATABASE_URL server), synchronous_commit on. The phases are in
app/bench_phases.py, the worker processes in app/bench_workers.py; docs/performance.md
explains the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import secrets
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dagq import __version__
from dagq.config import Settings
from dagq.errors import DagqError

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


FULL = Sizes(20_000, 100_000, 10_000, 500, 200, 50, 1_000_000)
QUICK = Sizes(2_000, 2_000, 300, 20, 20, 5, 100_000)

# The figures the engine aims for on the reference machine (2 cores): shown beside
# the measurements, never asserted.
TARGETS = {
    "dag_node_tasks_per_s": ">= 3,500", "flat_nodes_per_s": ">= 7,000",
    "latency_dag_p50": "<= 10 ms", "latency_dag_p99": "<= 25 ms",
    "latency_single_p50": "<= 3 ms", "big_ratio": ">= 0.80",
}


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (8)")
    parser.add_argument("--json", dest="json_path", default=None, metavar="PATH",
                        help="also write every figure to this JSON file")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: a smoke run of every phase in seconds")
    parser.add_argument("--big", action="store_true",
                        help="also measure flat throughput with 1,000,000 finished node "
                             "rows in dagq.node_tasks (100,000 with --quick)")
    parser.add_argument("--compare", default=None, metavar="REF",
                        help="also bench the git commit REF (in a temporary worktree and "
                             "venv), alternating with this checkout, and print the ratios")
    parser.add_argument("--rounds", type=int, default=2,
                        help="with --compare: benches of each side, alternating (2)")


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here so that building the CLI parser stays cheap.
    import psycopg

    from dagq.bench_phases import Bench, bench_queries, open_bookkeeping
    from dagq.bench_report import print_report
    from dagq.db import open_pool
    from dagq.migrate import migrate
    from dagq.repository import Repository

    if args.workers < 1 or args.threads < 1:
        print("dagq: error: --workers and --threads must be at least 1", file=sys.stderr)
        return 2
    if args.compare:
        from dagq.bench_compare import run_compare

        if args.rounds < 1:
            print("dagq: error: --rounds must be at least 1", file=sys.stderr)
            return 2
        passed = [f"--workers={args.workers}", f"--threads={args.threads}",
                  *(["--quick"] if args.quick else []), *(["--big"] if args.big else [])]
        return run_compare(args, passed)
    sizes = QUICK if args.quick else FULL
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM cleans up like Ctrl-C
    began = time.monotonic()
    load_before = _load_average()
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(tempfile.mkdtemp(prefix="dagqb-", dir="/tmp"))
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)
            url, database = _database(settings, tmp, stack)
            migrate(url)
            repo = Repository(open_pool(url, size=8, name="bench"))
            stack.callback(repo.close)
            conn = stack.enter_context(open_bookkeeping(url))
            q = bench_queries()
            database.update(conn.execute(q["server_facts"]).fetchone() or {})
            logs = tmp / "logs"
            logs.mkdir()
            bench = Bench(url=url, q=q, repo=repo, conn=conn, workers=args.workers,
                          threads=args.threads, log_dir=logs)
            try:
                results = _measure(bench, sizes, big=args.big)
            except psycopg.Error as exc:
                raise DagqError(f"bench failed: {type(exc).__name__}: {exc}") from exc
    finally:
        signal.signal(signal.SIGTERM, previous)
    results = {
        "dagq_version": __version__,
        "git": _git(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "dagq " + " ".join(sys.argv[1:]),
        "machine": {**_machine(), "load_average_1m": {"before": load_before,
                                                      "after": _load_average()}},
        "database": database,
        "config": {"workers": args.workers, "threads": args.threads, "quick": args.quick,
                   "big": args.big, "sizes": asdict(sizes)},
        **results,
        "elapsed_s": round(time.monotonic() - began, 1),
    }
    print_report(results, TARGETS)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"figures written to {args.json_path}", file=sys.stderr)
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _measure(bench: Any, sizes: Sizes, *, big: bool) -> dict[str, Any]:
    from dagq import bench_phases as phases

    log.info("ceiling: %d rows one per transaction, %d rows %d per statement, %d "
             "connections", sizes.ceiling_single_rows, sizes.ceiling_batch_rows,
             phases.CEILING_BATCH, phases.CEILING_CONNECTIONS)
    single = phases.ceiling(bench, sizes.ceiling_single_rows, 1)
    batch = phases.ceiling(bench, sizes.ceiling_batch_rows, phases.CEILING_BATCH)
    notify = phases.ceiling(bench, sizes.ceiling_single_rows, 1, notify=True)
    log.info("flat: %d one-node runs, %d workers x %d threads", sizes.flat_runs,
             bench.workers, bench.threads)
    flat = phases.flat(bench, sizes.flat_runs)
    log.info("dag: %d runs of 1 -> %d -> 1", sizes.dag_runs, phases.DAG_WIDTH)
    dag, latency = phases.dag_and_latency(bench, sizes.dag_runs, sizes.latency_single,
                                          sizes.latency_dag)
    grown = None
    if big:
        log.info("big: %d finished node rows, then flat again", sizes.big_rows)
        grown = phases.big(bench, sizes.big_rows, sizes.flat_runs, flat["nodes_per_s"])

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
    memory = flat["worker_memory"] + dag["worker_memory"]
    return {
        "ceiling": {"single": single, "batch": batch, "single_notify": notify},
        "flat": flat, "dag": dag, "latency": latency, "ratios": ratios, "big": grown,
        "worker_rss": _rss_summary(memory),
    }


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


# ===== the database ===================================================================

def _database(settings: Settings, tmp: Path, stack: contextlib.ExitStack) -> tuple[
        str, dict[str, Any]]:
    """A fresh, migrated-to-be database with synchronous_commit on, and who owns it."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from dagq.bench_phases import bench_queries
    from dagq.embedded_pg import EmbeddedPostgres

    q = bench_queries()
    name = f"dagq_bench_{os.getpid()}_{secrets.token_hex(3)}"
    if not settings.database_url:
        server = EmbeddedPostgres(tmp / "server", database=name)
        started = time.monotonic()
        url = server.start()
        stack.callback(server.release)
        log.info("embedded Postgres in %s started in %.1fs", server.data_dir,
                 time.monotonic() - started)
        _admin(url, q["synchronous_commit_on"], name)
        return url, {"server": "embedded (temporary directory)", "scratch": True}
    admin_url = settings.database_url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute(q["can_create_database"]).fetchone()
        if row and row[0]:
            conn.execute(sql.SQL(q["create_database"]).format(name=sql.Identifier(name)))
            stack.callback(_admin, admin_url, q["drop_database"], name)
            _admin(admin_url, q["synchronous_commit_on"], name)
            return make_conninfo(admin_url, dbname=name), {
                "server": "DAGQ_DATABASE_URL", "scratch": True}
        busy = conn.execute(q["dagq_runs_exist"]).fetchone()
    if busy and busy[0]:
        raise DagqError("dagq bench needs a fresh database: DAGQ_DATABASE_URL's role may "
                        "not create one, and its database already holds runs")
    log.warning("cannot create a scratch database; benchmarking in DAGQ_DATABASE_URL's "
                "(empty) database, whose bench runs stay behind")
    return admin_url, {"server": "DAGQ_DATABASE_URL", "scratch": False}


def _admin(url: str, statement: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL(statement).format(name=sql.Identifier(name)))


def _git() -> dict[str, Any] | None:
    """The code measured: commit, and whether the engine's files had local changes."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                                capture_output=True, timeout=5, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", "app", "workers", "sql"],
                                 cwd=root, text=True, capture_output=True, timeout=5,
                                 check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "local_changes": bool(changed)}


def _load_average() -> float | None:
    """Other work on the machine skews every figure: recorded beside them."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": memory_gib,
            "python": platform.python_version(), "os": platform.platform()}
