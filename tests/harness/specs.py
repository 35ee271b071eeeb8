"""Workflow specs the tests build runs from: `spec` for a named set of nodes, and the
shapes many tests share (a diamond, a fan-out of any width)."""

from __future__ import annotations

from typing import Any

from dagq.spec.workflow import WorkflowSpec, parse_spec


def spec(nodes: dict[str, Any], *, name: str = "wf", **extra: Any) -> WorkflowSpec:
    return parse_spec({"name": name, "nodes": nodes, **extra})


def diamond() -> WorkflowSpec:
    return spec({
        "a": {"executor": "builtin.echo"},
        "b": {"executor": "builtin.echo", "depends_on": ["a"]},
        "c": {"executor": "builtin.echo", "depends_on": ["a"]},
        "d": {"executor": "builtin.merge", "depends_on": ["b", "c"]},
    }, name="diamond")


def fan_out(width: int) -> WorkflowSpec:
    nodes: dict[str, Any] = {"root": {"executor": "builtin.noop"}}
    for i in range(width):
        nodes[f"m{i}"] = {"executor": "builtin.echo", "depends_on": ["root"]}
    nodes["agg"] = {"executor": "builtin.merge", "depends_on": [f"m{i}" for i in range(width)]}
    return spec(nodes, name=f"fan{width}")
