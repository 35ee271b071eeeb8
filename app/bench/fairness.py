"""The `fairness` phase of `dagq bench` (issue 18, with --fairness): a big tenant's
backlog of one-node runs drains while a small tenant submits one run every 50 ms. The
small tenant's submit -> start p50/p99, and the drain rate of both against the same
drain with one tenant alone (the price of fair leasing)."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from dagq.bench import phases as ph
from dagq.errors import DagqError
from dagq.store.new_runs import RunTemplate

log = logging.getLogger("dagq.bench")

SMALL_TENANT = "bench-small"
SMALL_EVERY_S = 0.05
GROUP = 1_000  # runs per group submit


def bulk_submit(b: ph.Bench, workflow: str, runs: int, tenant: str = ph.TENANT) -> float:
    """`runs` one-node runs of `tenant` by group submits of GROUP: the seconds taken."""
    template = RunTemplate.of(ph.flat_spec(workflow))
    fingerprint = hashlib.sha256(workflow.encode()).hexdigest()
    started = time.perf_counter()
    for start in range(0, runs, GROUP):
        batch = [template.new_run(tenant=tenant, version=None, latest=False,
                                  fingerprint=fingerprint, event_key=None, priority=0,
                                  inputs={}, deadline_s=None)
                 for _ in range(min(GROUP, runs - start))]
        for outcome in b.repo.submissions.submit_runs(batch):
            if isinstance(outcome, DagqError):
                raise outcome
    return time.perf_counter() - started


def _drain_rate(b: ph.Bench, workflows: list[str]) -> dict[str, Any]:
    return ph.span_figures(b.one("fair_span", {"workflows": workflows}), "fairness")


def _alone(b: ph.Bench, runs: int, workflow: str) -> dict[str, Any]:
    seconds = bulk_submit(b, workflow, runs)
    log.info("fairness: %d runs of one tenant submitted in %.1fs; draining", runs, seconds)
    b.checkpoint()
    with b.fleet(workflow) as fleet:
        fleet.start()
        fleet.wait_ready(b.conn, b.q["alive_workers"])
        ph.wait_drained(b, workflow, fleet)
        fleet.stop()
    return {"submit_runs_per_s": round(runs / seconds, 1), **_drain_rate(b, [workflow])}


def _beside(b: ph.Bench, runs: int) -> dict[str, Any]:
    big, small = "bench-fair-big", "bench-fair-small"
    seconds = bulk_submit(b, big, runs)
    log.info("fairness: %d runs of the big tenant submitted in %.1fs; draining while "
             "%s submits one run every %.0f ms", runs, seconds, SMALL_TENANT,
             SMALL_EVERY_S * 1000)
    small_spec = ph.flat_spec(small)
    submitted = 0
    b.checkpoint()
    with b.fleet(big) as fleet:
        fleet.start()
        fleet.wait_ready(b.conn, b.q["alive_workers"])
        next_at = time.monotonic()
        while b.one("open_runs_of", {"tenant": ph.TENANT, "workflow": big})["open"]:
            fleet.check_alive()
            b.repo.submissions.submit_run(tenant=SMALL_TENANT, spec=small_spec, inputs={})
            submitted += 1
            next_at += SMALL_EVERY_S
            time.sleep(max(0.0, next_at - time.monotonic()))
        deadline = time.monotonic() + ph.STALL_TIMEOUT_S
        while b.one("open_runs_of", {"tenant": SMALL_TENANT, "workflow": small})["open"]:
            if time.monotonic() > deadline:
                raise DagqError(f"fairness: {small} runs still open\n{fleet.log_tails()}")
            time.sleep(ph.DRAIN_POLL_S)
        fleet.stop()
    starts = [float(r["ms"]) for r in b.conn.execute(
        b.q["fair_start_ms"], {"tenant": SMALL_TENANT, "workflow": small}).fetchall()]
    latency = ph.percentiles(starts)
    return {"small_runs": submitted, "small_submit_to_start_p50_ms": latency["p50_ms"],
            "small_submit_to_start_p99_ms": latency["p99_ms"],
            "small_submit_to_start_max_ms": latency["max_ms"],
            **_drain_rate(b, [big, small])}


def fairness(b: ph.Bench, *, runs: int) -> dict[str, Any]:
    """The drain of one tenant alone, the same beside a small tenant's trickle, then alone
    again: the ratio is to the mean of the two alone drains, so the table's growth over
    the phase (each drain leaves `runs` finished rows and dead index entries behind)
    weighs on both sides alike rather than only on the later one."""
    first = _alone(b, runs, "bench-fair-alone")
    beside = _beside(b, runs)
    second = _alone(b, runs, "bench-fair-alone-2")
    alone_rate = (first["nodes_per_s"] + second["nodes_per_s"]) / 2
    return {"big_runs": runs, "alone": {**first, "nodes_per_s": round(alone_rate, 1),
                                        "first_nodes_per_s": first["nodes_per_s"],
                                        "second_nodes_per_s": second["nodes_per_s"]},
            "beside": beside, "drain_ratio": round(beside["nodes_per_s"] / alone_rate, 3)}
