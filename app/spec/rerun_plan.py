"""Rerun from a node: which nodes of a finished run run again and which are copied.

A rerun of a terminal run makes a new run of the same workflow version. The nodes
named in `from` and everything downstream of them run again; every other node (an
ancestor of the rerun, or on an unrelated branch) is copied as it ended: succeeded with
its recorded outputs (or the caller's override), or skipped (an `if` not met). A node to
copy that did not end that way, with no override, is an error: its dependents in the new
run would have nothing to read.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dagq.errors import InvalidRequest
from dagq.spec.workflow import WorkflowSpec


@dataclasses.dataclass(frozen=True)
class Copy:
    """A node of the new run that ends at once, as it ended in the original."""

    status: str  # succeeded or skipped
    outputs: Any
    overridden: bool = False


@dataclasses.dataclass(frozen=True)
class RerunPlan:
    rerun: frozenset[str]  # `from` and its descendants: these run again
    copies: dict[str, Copy]  # every other node, in topological order


def downstream(spec: WorkflowSpec, start: list[str]) -> frozenset[str]:
    """`start` and every node that depends on one of them, directly or not."""
    dependents = spec.dependents()
    seen = set(start)
    frontier = list(start)
    while frontier:
        for key in dependents[frontier.pop()]:
            if key not in seen:
                seen.add(key)
                frontier.append(key)
    return frozenset(seen)


def check_body(from_: Any, outputs: Any) -> tuple[list[str], dict[str, Any]]:
    """The checks that need no run: `from` a non-empty list of keys, `outputs` an object
    of objects."""
    if not isinstance(from_, list) or not from_ or \
            not all(isinstance(key, str) for key in from_):
        raise InvalidRequest("'from' must be a non-empty list of node keys")
    if outputs is None:
        outputs = {}
    if not isinstance(outputs, dict):
        raise InvalidRequest("'outputs' must be a JSON object of node key -> outputs")
    bad = sorted(key for key, value in outputs.items() if not isinstance(value, dict))
    if bad:
        raise InvalidRequest(f"the outputs given for {', '.join(map(repr, bad))} must be "
                             "JSON objects (a node's outputs are an object)", {"nodes": bad})
    return list(dict.fromkeys(from_)), outputs


def plan_rerun(spec: WorkflowSpec, ended: dict[str, dict[str, Any]], from_: Any,
               outputs: Any) -> RerunPlan:
    """The plan, or InvalidRequest naming the problem. `ended`: the original run's
    top-level nodes by key (status, outputs)."""
    start, outputs = check_body(from_, outputs)
    unknown = [key for key in start if key not in spec.nodes]
    if unknown:
        raise InvalidRequest(f"'from' names unknown node(s) {', '.join(map(repr, unknown))}",
                             {"unknown": unknown, "nodes": sorted(spec.nodes)})
    rerun = downstream(spec, start)
    not_copied = sorted(key for key in outputs if key not in spec.nodes or key in rerun)
    if not_copied:
        raise InvalidRequest(
            f"'outputs' may only name nodes that are copied (not in 'from' nor downstream "
            f"of it): {', '.join(map(repr, not_copied))}", {"nodes": not_copied})
    copies: dict[str, Copy] = {}
    missing: dict[str, str | None] = {}
    for key in spec.topological_order():
        if key in rerun:
            continue
        node = ended.get(key) or {}
        if key in outputs:
            copies[key] = Copy("succeeded", outputs[key], overridden=True)
        elif node.get("status") == "succeeded":
            copies[key] = Copy("succeeded", node.get("outputs"))
        elif node.get("status") == "skipped":
            copies[key] = Copy("skipped", None)
        else:
            missing[key] = node.get("status")
    if missing:
        names = ", ".join(f"{key!r} ({status})" for key, status in missing.items())
        raise InvalidRequest(
            f"node(s) {names} did not succeed in the original run, so they cannot be "
            "copied: rerun from them too, or give their outputs in 'outputs'",
            {"not_succeeded": missing})
    return RerunPlan(rerun=rerun, copies=copies)
