"""The `bulk` phase of `dagq bench` (`--phase bulk`, issue 34 speed):

1. A bulk cancel beside a drain: `runs` runs tagged {"batch": "bench-bulk"} (most
   queued behind a flat backlog at a lower priority, a few running a long sleep) are
   cancelled through the API (POST /v1/runs/bulk/cancel, 1,000 a call, following
   next_cursor) while the workers drain the flat backlog. Figures: the cancel's time,
   and the drain's rate during it against the same length of time just before (the
   stall). Targets: < 10 s for 10,000 runs, a stall <= 20 %.
2. The metadata filter: `meta_runs` finished runs generated set-based with a
   conversation, a user and an app each, then GET /v1/runs?meta.conversation_id=..&
   status=.. timed through the store and through HTTP (p50/p99 of `samples` random
   conversations), with the plan's index. Target: p99 < 50 ms.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx

from dagq.bench import phases as ph
from dagq.bench.api_procs import ApiProcesses
from dagq.errors import DagqError
from dagq.runtime.sqlfiles import SQL_DIR, parse_queries, queries
from dagq.spec.metadata import json_path
from dagq.spec.workflow import parse_spec
from dagq.store.new_runs import RunTemplate

log = logging.getLogger("dagq.bench")

BATCH = "bench-bulk"
DRAIN, QUEUED, RUNNING = "bench-bulk-drain", "bench-bulk-queued", "bench-bulk-running"
RUNNING_RUNS = 4  # running a long sleep when the cancel comes (their workers are told)
GROUP = 1_000  # runs per group submit
PER_CALL = 1_000  # runs per bulk call (the API's limit)
WARM_S = 2.0  # the drain settles before the "before" window
BEFORE_S = 5.0  # the drain alone, just before the cancel
PER_CONVERSATION = 4
LISTED = "list_runs_by_metadata"  # the store's statement behind GET /v1/runs?meta.K=V


def bulk_queries() -> dict[str, str]:
    return parse_queries((SQL_DIR / "bench_bulk.sql").read_text())


def bulk(b: ph.Bench, *, runs: int, drain_runs: int, meta_runs: int,
         samples: int) -> dict[str, Any]:
    q = bulk_queries()
    with ApiProcesses(b.url, b.log_dir, name="bulk") as base:
        cancel = _cancel_beside_drain(b, q, base, runs=runs, drain_runs=drain_runs)
        search = _metadata_search(b, q, base, meta_runs=meta_runs, samples=samples)
    return {"cancel": cancel, "search": search}


def _submit(b: ph.Bench, spec: dict[str, Any], count: int, *, priority: int,
            metadata: dict[str, Any] | None) -> None:
    template = RunTemplate.of(parse_spec(spec))
    for start in range(0, count, GROUP):
        batch = [template.new_run(tenant=ph.TENANT, version=None, latest=False,
                                  fingerprint=spec["name"], event_key=None,
                                  priority=priority, inputs={}, deadline_s=None,
                                  metadata=metadata)
                 for _ in range(min(GROUP, count - start))]
        for outcome in b.repo.submissions.submit_runs(batch):
            if isinstance(outcome, DagqError):
                raise outcome


def _cancel_beside_drain(b: ph.Bench, q: dict[str, str], base: str, *, runs: int,
                         drain_runs: int) -> dict[str, Any]:
    tagged = {"batch": BATCH}
    _submit(b, {"name": DRAIN, "nodes": {"a": {"executor": "builtin.noop"}}}, drain_runs,
            priority=0, metadata=None)
    _submit(b, {"name": RUNNING, "nodes": {"s": {"executor": "builtin.sleep",
                                                 "params": {"seconds": 600}}}},
            RUNNING_RUNS, priority=10, metadata=tagged)
    _submit(b, {"name": QUEUED, "nodes": {"a": {"executor": "builtin.echo"},
                                          "b": {"executor": "builtin.echo",
                                                "depends_on": ["a"]}}},
            runs - RUNNING_RUNS, priority=-10, metadata=tagged)
    log.info("bulk: %d runs to cancel (%d running), %d runs draining beside", runs,
             RUNNING_RUNS, drain_runs)
    b.checkpoint()
    with b.fleet(DRAIN) as fleet:
        fleet.start()
        fleet.wait_ready(b.conn, b.q["alive_workers"])
        deadline = time.monotonic() + ph.STALL_TIMEOUT_S
        while b.conn.execute(q["running_of"], {"workflow": RUNNING}).fetchone()["n"] \
                < RUNNING_RUNS:
            if time.monotonic() > deadline:
                raise DagqError(f"bulk: the sleeping runs never ran\n{fleet.log_tails()}")
            time.sleep(0.1)
        time.sleep(WARM_S)
        before_at = _clock(b, q)
        time.sleep(BEFORE_S)  # nothing happens but the drain: the rate to compare with
        started_at = _clock(b, q)
        started = time.perf_counter()
        acted, skipped, calls = _cancel_all(base, tagged)
        seconds = time.perf_counter() - started
        ended_at = _clock(b, q)
        # (a drain that ran out during the cancel would count as a stall)
        left = b.conn.execute(q["queued_of"], {"workflow": DRAIN}).fetchone()["n"]
        fleet.check_alive()
        fleet.stop()
    before = _drained(b, q, before_at, started_at)
    during = _drained(b, q, started_at, ended_at)
    before_rate = before / (started_at - before_at).total_seconds()
    during_rate = during / (ended_at - started_at).total_seconds()
    state = b.conn.execute(q["bulk_targets"], {"workflows": [QUEUED, RUNNING]}).fetchone()
    return {"runs": runs, "acted": acted, "skipped": skipped, "calls": calls,
            "seconds": round(seconds, 3), "runs_per_s": round(acted / seconds, 1),
            "drain_before_nodes_per_s": round(before_rate, 1),
            "drain_during_nodes_per_s": round(during_rate, 1),
            "stall": round(1 - during_rate / before_rate, 3) if before_rate else None,
            "drain_queued_after": left,
            "targets_after": state}


def _clock(b: ph.Bench, q: dict[str, str]) -> Any:
    return b.conn.execute(q["clock"]).fetchone()["at"]


def _drained(b: ph.Bench, q: dict[str, str], since: Any, until: Any) -> int:
    return int(b.conn.execute(q["drained_between"],
                              {"since": since, "until": until}).fetchone()["nodes"])


def _cancel_all(base: str, meta: dict[str, str]) -> tuple[int, dict[str, int], int]:
    """The bulk cancel through the API, call after call until no cursor is left."""
    acted, skipped, calls, cursor = 0, dict[str, int](), 0, None
    with httpx.Client(base_url=base, timeout=120) as http:
        while True:
            body: dict[str, Any] = {"filter": {"meta": meta}, "limit": PER_CALL}
            if cursor:
                body["cursor"] = cursor
            reply = http.post("/v1/runs/bulk/cancel", json=body)
            if reply.status_code != 200:
                raise DagqError(f"bulk cancel: {reply.status_code} {reply.text[:500]}")
            out = reply.json()
            calls += 1
            acted += out["acted"]
            for reason, n in out["skipped_by"].items():
                skipped[reason] = skipped.get(reason, 0) + n
            cursor = out["next_cursor"]
            if not cursor:
                return acted, skipped, calls


def _metadata_search(b: ph.Bench, q: dict[str, str], base: str, *, meta_runs: int,
                     samples: int) -> dict[str, Any]:
    started = time.perf_counter()
    b.conn.execute(q["many_finished_runs"], {"n": meta_runs,
                                             "per_conversation": PER_CONVERSATION})
    b.conn.execute(q["analyze_runs"])
    log.info("bulk: %d runs with metadata written in %.1fs; searching", meta_runs,
             time.perf_counter() - started)
    rng = random.Random(34)
    conversations = [f"c-{rng.randrange(meta_runs // PER_CONVERSATION)}"
                     for _ in range(samples)]
    # As left by the insert (autovacuum of a million new rows to come, the GIN index's
    # pending list unmerged: 0.36 ms a search against 0.06 ms merged, at 300,000 runs),
    # then after a VACUUM, as a table that was not just loaded is.
    fresh = _time_searches(b, base, conversations)
    b.conn.execute(q["vacuum_runs"])
    merged = _time_searches(b, base, conversations)
    return {"runs": meta_runs, "samples": samples, "after_insert": fresh,
            "after_vacuum": merged}


def _time_searches(b: ph.Bench, base: str, conversations: list[str]) -> dict[str, Any]:
    """p50/p99 of the failed runs of each conversation: the store's call, then HTTP."""
    store_ms, http_ms, found, failed = [], [], 0, dict[int, int]()
    for conversation in conversations:
        t0 = time.perf_counter()
        rows = b.repo.runs.list_runs(tenant=None, status="failed",
                                     meta={"conversation_id": conversation}, limit=51)
        store_ms.append((time.perf_counter() - t0) * 1000)
        found += len(rows)
    with httpx.Client(base_url=base, timeout=30) as http:
        http.get("/v1/runs", params={"limit": 1})  # the connection, once
        for conversation in conversations:
            t0 = time.perf_counter()
            reply = http.get("/v1/runs", params={"meta.conversation_id": conversation,
                                                 "status": "failed"})
            http_ms.append((time.perf_counter() - t0) * 1000)
            if reply.status_code != 200:  # (a 503 past the API's bound: counted, shown)
                failed[reply.status_code] = failed.get(reply.status_code, 0) + 1
                log.warning("GET /v1/runs: %d %s", reply.status_code, reply.text[:300])
    return {"found": found, "store": ph.percentiles(store_ms),
            "http": ph.percentiles(http_ms), "http_errors": failed,
            "plan": _plan(b, conversations[0])}


def _plan(b: ph.Bench, conversation: str) -> dict[str, Any]:
    """The filter's plan (EXPLAIN ANALYZE of the store's statement): its scans."""
    params = {"tenant": None, "status": "failed", "workflow": None, "limit": 51,
              "parent": None, "created_after": None, "created_before": None,
              "cursor_at": None, "cursor_id": None,
              "meta": json_path({"conversation_id": conversation})}
    # (the store's own statement, as GET /v1/runs runs it: what is measured, not a bench
    # query of sql/bench*.sql)
    statement = queries()[LISTED]
    row = b.conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params).fetchone()
    plan = row["QUERY PLAN"][0]
    nodes = list(_nodes(plan["Plan"]))
    return {"indexes": sorted({n["Index Name"] for n in nodes if "Index Name" in n}),
            "seq_scan_of_runs": any(n["Node Type"] == "Seq Scan"
                                    and n.get("Relation Name") == "runs" for n in nodes),
            "execution_ms": plan["Execution Time"]}


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)
