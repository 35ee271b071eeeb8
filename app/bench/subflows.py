"""The `subflows` phase of `dagq bench`: parent runs that map a 3-node sub-workflow over
10 items, 5 at a time (issue 17), against the same work inlined as plain nodes.

Both are submitted while the workers already run (so submit -> finished is a latency
under load, not the time a backlog takes to drain). Figures: node tasks/s over every
level of the trees, parent submit -> parent finished p50, and the overhead of each
child run: the extra drain time of the sub-workflow version per child run.
"""

from __future__ import annotations

import logging
import statistics
from typing import Any

from dagq.bench import phases as ph
from dagq.errors import DagqError
from dagq.service.workflows import pin_subworkflows
from dagq.spec.workflow import WorkflowSpec, parse_spec

log = logging.getLogger("dagq.bench")

ITEMS = 10
MAX_PARALLEL = 5
CHILD = "bench-sub-summarize"
STEPS = ("fetch", "split", "summary")


def _child_spec() -> WorkflowSpec:
    return parse_spec({"name": CHILD, "nodes": {
        "fetch": {"executor": "builtin.noop"},
        "split": {"executor": "builtin.noop", "depends_on": ["fetch"]},
        "summary": {"executor": "builtin.noop", "depends_on": ["split"]}}})


def _mapped_spec(b: ph.Bench) -> WorkflowSpec:
    spec = parse_spec({"name": "bench-sub-research", "nodes": {
        "retrieve": {"executor": "builtin.echo", "params": {"docs": list(range(ITEMS))}},
        "each": {"workflow": {"name": CHILD}, "depends_on": ["retrieve"],
                 "map": {"dep": "retrieve", "path": "params.docs",
                         "max_parallel": MAX_PARALLEL}},
        "aggregate": {"executor": "builtin.noop", "depends_on": ["each"]}}})
    return pin_subworkflows(spec, b.repo)


def _inlined_spec() -> WorkflowSpec:
    nodes: dict[str, Any] = {"retrieve": {"executor": "builtin.noop"}}
    for i in range(ITEMS):
        prev = "retrieve"
        for step in STEPS:
            nodes[f"{step}{i}"] = {"executor": "builtin.noop", "depends_on": [prev]}
            prev = f"{step}{i}"
    nodes["aggregate"] = {"executor": "builtin.noop",
                          "depends_on": [f"summary{i}" for i in range(ITEMS)]}
    return parse_spec({"name": "bench-sub-inlined", "nodes": nodes})


def _drain_live(b: ph.Bench, spec: WorkflowSpec, parents: int,
                levels: list[str]) -> dict[str, Any]:
    """Start the workers, submit `parents` runs while they run, wait until all finished."""
    b.checkpoint()
    deadlocks = b.one("deadlocks")["deadlocks"]
    with b.fleet(spec.name) as fleet:
        fleet.start()
        fleet.wait_ready(b.conn, b.q["alive_workers"])
        submitted = ph.submit_many(b, spec, parents)
        ph.wait_drained(b, spec.name, fleet)
        fleet.mark_drained()
        fleet.stop()
    row = b.one("tree_span", {"workflows": levels})
    if row["succeeded"] != row["nodes"]:
        raise DagqError(f"{spec.name}: {row['succeeded']} of {row['nodes']} node tasks "
                        "succeeded")
    durations = b.conn.execute(b.q["run_durations"], {"workflow": spec.name}).fetchall()
    if any(d["status"] != "succeeded" for d in durations):
        raise DagqError(f"{spec.name}: not every parent run succeeded")
    seconds = ph.span_s(row)
    latencies = [float(d["ms"]) for d in durations]
    return {"parents": parents, "node_tasks": row["nodes"], "seconds": round(seconds, 3),
            "node_tasks_per_s": round(row["nodes"] / seconds, 1),
            "submit": submitted, "parent_p50_ms": round(statistics.median(latencies), 1),
            "parent_max_ms": round(max(latencies), 1),
            "deadlocks": b.one("deadlocks")["deadlocks"] - deadlocks}


def subflows(b: ph.Bench, *, parents: int) -> dict[str, Any]:
    b.repo.workflows.register_workflow(_child_spec())
    mapped = _mapped_spec(b)
    log.info("subflows: %d parents mapping a 3-node sub-workflow over %d items, %d at a "
             "time", parents, ITEMS, MAX_PARALLEL)
    sub = _drain_live(b, mapped, parents, [mapped.name, CHILD])
    children = b.one("child_runs", {"workflow": CHILD})
    if children["succeeded"] != parents * ITEMS:
        raise DagqError(f"subflows: {children['succeeded']} of {parents * ITEMS} child "
                        "runs succeeded")
    log.info("subflows: the same work inlined as plain nodes")
    inlined = _drain_live(b, _inlined_spec(), parents, ["bench-sub-inlined"])
    overhead_ms = (sub["seconds"] - inlined["seconds"]) / children["runs"] * 1000
    return {"items": ITEMS, "max_parallel": MAX_PARALLEL, "child_runs": children["runs"],
            "mapped": sub, "inlined": inlined,
            "overhead_per_child_ms": round(overhead_ms, 3),
            "throughput_ratio": round(sub["node_tasks_per_s"]
                                      / inlined["node_tasks_per_s"], 3)}
