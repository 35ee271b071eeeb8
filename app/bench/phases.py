"""The measurements of `dagq bench`, one function per phase.

Throughputs come from the database's own clocks (node_tasks.started_at/finished_at),
so process start-up and polling never count; latencies are server-side too
(runs.created_at is the submit transaction's start, started_at the lease's).
"""

from __future__ import annotations

import contextlib
import json
import logging
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from dagq.bench.costs import DrainCosts
from dagq.bench.fleet import WorkerFleet
from dagq.errors import DagqError
from dagq.runtime.sqlfiles import SQL_DIR, parse_queries
from dagq.spec.workflow import WorkflowSpec, parse_spec
from dagq.states import TERMINAL_RUN_STATUSES
from dagq.store import Store

log = logging.getLogger("dagq.bench")

TENANT = "bench"
CEILING_CONNECTIONS = 8
CEILING_BATCH = 100
SUBMIT_THREADS = 8
DAG_WIDTH = 10
STALL_TIMEOUT_S = 60.0
DRAIN_POLL_S = 0.25


def bench_queries() -> dict[str, str]:
    return parse_queries((SQL_DIR / "bench.sql").read_text())


@dataclass
class Bench:
    """What every phase needs: the database, its statements, and the worker shape."""

    url: str
    q: dict[str, str]
    repo: Store
    conn: psycopg.Connection[dict[str, Any]]  # autocommit, for bookkeeping reads
    workers: int
    threads: int
    log_dir: Path
    postmaster: int | None = None  # the server's pid in this machine's /proc, if found
    # Where the workers connect when not `url` (through PgBouncer: dagq.bench.via), and
    # settings of theirs beside it.
    fleet_url: str | None = None
    fleet_env: dict[str, str] | None = None

    def fleet(self, name: str, env: dict[str, str] | None = None) -> WorkerFleet:
        return WorkerFleet(self.fleet_url or self.url, processes=self.workers,
                           threads=self.threads, log_dir=self.log_dir, name=name,
                           env={**(self.fleet_env or {}), **(env or {})})

    def one(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        row = self.conn.execute(self.q[name], params or {}).fetchone()
        assert row is not None
        return row

    def checkpoint(self) -> None:
        """Start each throughput phase with a clean WAL (needs pg_checkpoint; optional)."""
        with contextlib.suppress(psycopg.Error):
            self.conn.execute(self.q["checkpoint"])


# ===== specs ==========================================================================

def flat_spec(name: str) -> WorkflowSpec:
    return parse_spec({"name": name, "nodes": {"n": {"executor": "builtin.noop"}}})


def dag_spec(name: str, width: int = DAG_WIDTH) -> WorkflowSpec:
    nodes: dict[str, Any] = {"root": {"executor": "builtin.noop"}}
    for i in range(width):
        nodes[f"m{i}"] = {"executor": "builtin.noop", "depends_on": ["root"]}
    nodes["agg"] = {"executor": "builtin.merge", "depends_on": [f"m{i}" for i in range(width)]}
    return parse_spec({"name": name, "nodes": nodes})


# ===== 1. the raw-SQL ceiling =========================================================

def ceiling(b: Bench, rows: int, batch: int, *, notify: bool = False) -> dict[str, Any]:
    """Lease + complete `rows` no-op rows with 8 connections, `batch` rows per statement:
    two durable commits per lease (lease, then complete), as in dagq. `notify` adds a
    NOTIFY to each completing transaction."""
    complete = b.q["ceiling_complete_notify" if notify else "ceiling_complete"]
    with psycopg.connect(b.url, autocommit=True) as setup:
        setup.execute(b.q["ceiling_create"])
        setup.execute(b.q["ceiling_fill"], {"rows": rows})
        setup.execute(b.q["ceiling_analyze"])
    b.checkpoint()
    conns = [psycopg.connect(b.url, autocommit=True) for _ in range(CEILING_CONNECTIONS)]
    barrier = threading.Barrier(CEILING_CONNECTIONS + 1)
    done = [0] * CEILING_CONNECTIONS
    errors: list[BaseException] = []

    def drain(i: int) -> None:
        conn, me = conns[i], f"ceiling-{i}"
        try:
            barrier.wait()
            while True:
                leased = conn.execute(b.q["ceiling_lease"], {"limit": batch, "worker": me},
                                      prepare=True).fetchall()
                if not leased:
                    return
                conn.execute(complete, {
                    "ids": [r[0] for r in leased], "versions": [r[1] for r in leased],
                }, prepare=True)
                done[i] += len(leased)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(i,), daemon=True)
               for i in range(CEILING_CONNECTIONS)]
    try:
        for t in threads:
            t.start()
        barrier.wait()
        started = time.perf_counter()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
    finally:
        for conn in conns:
            conn.close()
    if errors:
        raise errors[0]
    check = b.one("ceiling_done")
    if check["done"] != rows:
        raise DagqError(f"ceiling: {check['done']} of {rows} rows completed")
    with psycopg.connect(b.url, autocommit=True) as setup:
        setup.execute(b.q["ceiling_drop"])
    return {"rows": rows, "batch": batch, "connections": CEILING_CONNECTIONS,
            "notify": notify, "seconds": round(seconds, 3), "jobs_per_s": round(rows / seconds, 1)}


# ===== submitting and draining ========================================================

def submit_many(b: Bench, spec: WorkflowSpec, count: int) -> dict[str, Any]:
    """Submit `count` runs through the repository from several threads at once."""
    per_thread = [count // SUBMIT_THREADS + (i < count % SUBMIT_THREADS)
                  for i in range(SUBMIT_THREADS)]

    def submit(n: int) -> None:
        for _ in range(n):
            b.repo.submissions.submit_run(tenant=TENANT, spec=spec, inputs={})

    started = time.perf_counter()
    with ThreadPoolExecutor(SUBMIT_THREADS, thread_name_prefix="bench-submit") as pool:
        for future in [pool.submit(submit, n) for n in per_thread if n]:
            future.result()
    seconds = time.perf_counter() - started
    return {"runs": count, "seconds": round(seconds, 3),
            "runs_per_s": round(count / seconds, 1)}


def wait_drained(b: Bench, workflow: str, fleet: WorkerFleet) -> None:
    """Until no run of `workflow` is open; fail if the workers die or stop progressing."""
    last_mark, last_change = -1, time.monotonic()
    while b.one("any_open_run", {"workflow": workflow})["open"]:
        fleet.check_alive()
        now = time.monotonic()
        mark = b.one("progress_mark")["mark"]
        if mark != last_mark:
            last_mark, last_change = mark, now
        elif now - last_change > STALL_TIMEOUT_S:
            raise DagqError(f"{workflow}: no node started or finished for "
                            f"{STALL_TIMEOUT_S:.0f}s\n{fleet.log_tails()}")
        time.sleep(DRAIN_POLL_S)


def span_s(row: dict[str, Any]) -> float:
    """A span row's first start to last finish, in seconds (node_span and its kin)."""
    if row["first_start"] is None or row["last_finish"] is None:
        raise DagqError("no node ran")
    return max((row["last_finish"] - row["first_start"]).total_seconds(), 1e-6)


def span_figures(row: dict[str, Any], what: str, noun: str = "nodes") -> dict[str, Any]:
    """A drain's figures from its span row (count, succeeded, first start, last finish,
    leases), keyed by `noun`; DagqError naming `what` unless every one succeeded."""
    if row["succeeded"] != row["nodes"]:
        raise DagqError(f"{what}: only {row['succeeded']} of {row['nodes']} {noun} "
                        "succeeded")
    seconds = span_s(row)
    return {noun: row["nodes"], "seconds": round(seconds, 3),
            f"{noun}_per_s": round(row["nodes"] / seconds, 1),
            "avg_lease_batch": round(row["nodes"] / max(row["leases"], 1), 2)}


def node_figures(b: Bench, workflow: str) -> dict[str, Any]:
    return span_figures(b.one("node_span", {"workflow": workflow}), workflow)


def worker_memory(b: Bench, fleet: WorkerFleet) -> list[dict[str, Any]]:
    rows = b.conn.execute(b.q["nodes_by_worker_pid"], {"pids": fleet.pids()}).fetchall()
    return fleet.memory_report({r["pid"]: r["nodes"] for r in rows})


# ===== 2. flat ========================================================================

def submit_and_drain(b: Bench, spec: WorkflowSpec, runs: int,
                     phase: str) -> tuple[dict[str, Any], list[dict[str, Any]], DrainCosts]:
    """Submit `runs` runs of `spec`, then start the workers and let them drain: the
    submit figures, the workers' memory report and what the drain cost (costs.py)."""
    submitted = submit_many(b, spec, runs)
    log.info("%s: %d runs submitted in %.1fs; draining", phase, runs, submitted["seconds"])
    b.checkpoint()
    costs = DrainCosts(b.conn, b.q, b.postmaster).begin(b.repo.db.pool)
    with b.fleet(spec.name) as fleet:
        fleet.start()
        fleet.wait_ready(b.conn, b.q["alive_workers"])
        costs.workers_ready(fleet.pids())
        wait_drained(b, spec.name, fleet)
        fleet.mark_drained()
        costs.workers_drained(fleet.pids())  # before SIGTERM: shutdown is not the drain's
        fleet.stop()
        memory = worker_memory(b, fleet)
    costs.end()
    return submitted, memory, costs


def flat(b: Bench, runs: int, workflow: str = "bench-flat") -> dict[str, Any]:
    """Submit `runs` one-node runs, then start the workers and let them drain."""
    submitted, memory, costs = submit_and_drain(b, flat_spec(workflow), runs, "flat")
    nodes = node_figures(b, workflow)
    return {"submit": submitted, **nodes, "worker_memory": memory,
            "costs": costs.per_node(nodes["nodes"])}


# ===== 3. fan-out DAG ==================================================================

def dag(b: Bench, runs: int, workflow: str = "bench-dag") -> dict[str, Any]:
    """Submit `runs` 1 -> DAG_WIDTH -> 1 runs, then start the workers and let them drain."""
    submitted, memory, costs = submit_and_drain(b, dag_spec(workflow), runs, "dag")
    nodes = node_figures(b, workflow)
    span = b.one("run_span", {"workflow": workflow})
    if span["succeeded"] != runs:
        raise DagqError(f"{workflow}: {span['succeeded']} of {runs} runs succeeded")
    return {
        "runs": runs, "submit": submitted, "node_tasks": nodes["nodes"],
        "seconds": nodes["seconds"], "node_tasks_per_s": nodes["nodes_per_s"],
        "runs_per_s": round(runs / span_s(span), 1),
        "avg_lease_batch": nodes["avg_lease_batch"], "worker_memory": memory,
        "costs": costs.per_node(nodes["nodes"]),
    }


# ===== 4. latency on idle workers ======================================================

def latency(b: Bench, single_samples: int,
            dag_samples: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Submit -> start on idle workers: single-node runs, then fan-out DAGs, one at a time.
    Returns the figures and the workers' memory report."""
    with b.fleet("bench-latency") as fleet:
        fleet.start()
        fleet.wait_ready(b.conn, b.q["alive_workers"])
        time.sleep(1.0)  # let the workers go idle (blocked on LISTEN)
        figures = {
            "single": _latency(b, fleet, flat_spec("bench-lat-single"), single_samples, "n"),
            "dag": _latency(b, fleet, dag_spec("bench-lat-dag"), dag_samples, "agg"),
        }
        fleet.stop()
        memory = worker_memory(b, fleet)
    return figures, memory


def single_latency(b: Bench, fleet: WorkerFleet, spec: WorkflowSpec,
                   samples: int) -> dict[str, Any]:
    """Submit -> start of `spec`'s one node `n` on the idle `fleet`, `samples` times."""
    return _latency(b, fleet, spec, samples, "n")


def _latency(b: Bench, fleet: WorkerFleet, spec: WorkflowSpec, samples: int,
             node_key: str) -> dict[str, Any]:
    """Submit one run, wait until it finished, repeat; then read submit -> start of
    `node_key` from the database."""
    with psycopg.connect(b.url, autocommit=True) as listen:
        listen.execute(b.q["listen_events"])
        for _ in range(samples):
            run_id = b.repo.submissions.submit_run(tenant=TENANT, spec=spec, inputs={}).run_id
            deadline = time.monotonic() + STALL_TIMEOUT_S
            while (b.one("run_status", {"run_id": run_id})["status"]
                   not in TERMINAL_RUN_STATUSES):
                fleet.check_alive()
                if time.monotonic() > deadline:
                    raise DagqError(f"latency run {run_id} did not finish\n"
                                    f"{fleet.log_tails()}")
                for _note in listen.notifies(timeout=0.5, stop_after=1):
                    pass
            time.sleep(0.01)
    rows = b.conn.execute(b.q["start_latency"],
                          {"workflow": spec.name, "node_key": node_key}).fetchall()
    starts = [float(r["start_ms"]) for r in rows]
    finishes = [float(r["finish_ms"]) for r in rows if r["finish_ms"] is not None]
    return {"samples": len(starts), "node": node_key, **percentiles(starts),
            "finish_p50_ms": round(statistics.median(finishes), 2) if finishes else None}


def one_by_one(call: Callable[[], Any], count: int) -> float:
    """Seconds for `count - 1` calls back to back, after one call that warms (pool
    connections, prepared statements)."""
    call()
    started = time.perf_counter()
    for _ in range(count - 1):
        call()
    return time.perf_counter() - started


def send_rate(actor: Any, count: int) -> dict[str, Any]:
    """`actor.send()` from one thread, `count` times (dagq's broker or Redis')."""
    seconds = one_by_one(actor.send, count)
    return {"messages": count, "seconds": round(seconds, 3),
            "sends_per_s": round((count - 1) / seconds, 1),
            "ms_per_send": round(seconds / (count - 1) * 1000, 3)}


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)

    def pct(p: float) -> float:  # linear interpolation between closest ranks
        k = (len(ordered) - 1) * p
        lo = int(k)
        hi = min(lo + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)

    return {"p50_ms": round(pct(0.50), 2), "p99_ms": round(pct(0.99), 2),
            "max_ms": round(ordered[-1], 2)}


# ===== 6. table growth ================================================================

def big(b: Bench, history_rows: int, runs: int, empty_nodes_per_s: float) -> dict[str, Any]:
    """Flat throughput again once `history_rows` finished nodes sit in dagq.node_tasks
    and as many of their events in dagq.run_events (over the week before)."""
    run_id = uuid.uuid4()
    started = time.perf_counter()
    with b.conn.transaction():
        b.conn.execute(b.q["history_run"], {"id": run_id, "rows": history_rows})
        b.conn.execute(b.q["history_nodes"], {"run_id": run_id, "rows": history_rows})
        b.conn.execute(b.q["history_events"], {"run_id": run_id, "rows": history_rows})
    inserted_s = time.perf_counter() - started
    b.conn.execute(b.q["analyze_dagq"])
    log.info("big: %d finished node rows and events inserted in %.1fs and analyzed", history_rows,
             inserted_s)
    plan = b.one("dequeue_plan")
    indexes = sorted(_plan_values(_first(plan), "Index Name"))
    table_rows = b.one("node_tasks_rows")["rows"]
    result = flat(b, runs, workflow="bench-flat-big")
    return {
        "history_rows": history_rows, "insert_s": round(inserted_s, 2),
        "node_tasks_rows": table_rows, "dequeue_plan_indexes": indexes,
        "flat": result, "nodes_per_s": result["nodes_per_s"],
        "ratio_to_empty": round(result["nodes_per_s"] / empty_nodes_per_s, 3),
    }


def _first(row: dict[str, Any]) -> Any:
    value = next(iter(row.values()))
    return json.loads(value) if isinstance(value, str) else value


def _plan_values(node: Any, key: str) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key and isinstance(v, str):
                found.add(v)
            else:
                found |= _plan_values(v, key)
    elif isinstance(node, list):
        for item in node:
            found |= _plan_values(item, key)
    return found


def open_bookkeeping(url: str) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)
