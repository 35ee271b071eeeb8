"""`dagq run why RUN_ID` (issue 32, item 6; docs/flow-control.md): why each of a run's
nodes that does not run now is held, from the `blocked` of GET /v1/runs/{id} (either
backend: dagq.service.blocked computes it)."""

from __future__ import annotations

import argparse

from dagq.models import RunView


def add_why_command(run_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    why = run_sub.add_parser("why", help="why a run's nodes are not running (paused, "
                             "dependencies, back-off, a signal, no worker)")
    why.add_argument("run_id", metavar="RUN_ID", help="a run id or a unique prefix of it")
    why.add_argument("--json", action="store_true",
                     help="one JSON document: {run_id, status, blocked, nodes: [{key, "
                          "status, blocked}]}")


def print_why(run: RunView, *, as_json: bool) -> int:
    from dagq.cli.views import print_json, when

    held = [n for n in run.nodes or [] if n.blocked is not None]
    if as_json:
        print_json({"run_id": str(run.run_id), "status": run.status,
                    "blocked": run.blocked.model_dump(mode="json") if run.blocked else None,
                    "nodes": [{"key": n.key, "status": n.status,
                               "blocked": n.blocked.model_dump(mode="json")}
                              for n in held if n.blocked is not None]})
        return 0
    if not held:
        print(f"run {run.run_id} is {run.status}: no node is held back"
              + (" (its ready nodes wait for a free worker)" if run.status in (
                  "queued", "running") else ""))
        return 0
    print(f"run {run.run_id} is {run.status}; "
          f"{run.blocked.reason if run.blocked else '-'} first:")
    for n in held:
        b = n.blocked
        if b is None:
            continue
        until = f" until {when(b.until)}" if b.until else ""
        print(f"  {n.key}  {n.status}  {b.reason}: {b.detail}{until}")
    return 0
