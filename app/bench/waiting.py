"""The `waiting` phase of `dagq bench`: the flat drain again, beside many runs whose nodes
wait (a signal that never comes): waiting rows stay out of the dequeue index, so the
drain should match the plain flat drain (issue 16 asks: within noise)."""

from __future__ import annotations

import logging
from typing import Any

from dagq.bench import phases as ph
from dagq.spec.workflow import parse_spec

log = logging.getLogger("dagq.bench")


def flat_beside_waits(b: ph.Bench, *, waiting_runs: int, runs: int,
                      flat_nodes_per_s: float) -> dict[str, Any]:
    waiting = parse_spec({"name": "bench-waiting", "nodes": {
        "hold": {"wait": {"signal": "never", "timeout_s": 365 * 86400}}}})
    held = ph.submit_many(b, waiting, waiting_runs)
    log.info("waiting: %d runs waiting (submitted in %.1fs); flat again beside them",
             waiting_runs, held["seconds"])
    drained = ph.flat(b, runs, "bench-flat-beside-waits")
    return {
        "waiting_runs": waiting_runs, "nodes_per_s": drained["nodes_per_s"],
        "seconds": drained["seconds"],
        "ratio_to_flat": round(drained["nodes_per_s"] / flat_nodes_per_s, 3),
    }
