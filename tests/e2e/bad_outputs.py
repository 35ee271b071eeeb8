"""Executors returning outputs Postgres cannot store (issue 12, faults 4 and 5); loaded
by the tests via DAGQ_ACTOR_MODULES."""

from __future__ import annotations

from typing import Any

from dagq.workers import executor
from tests.harness.outputs import nested


@executor("test.bad_output")
def bad_output(payload: dict[str, Any]) -> dict[str, Any]:
    kind = payload["params"]["kind"]
    if kind == "nul":
        return {"x": "a\x00b"}
    if kind == "nul_key":
        return {"a\x00b": 1}
    if kind == "surrogate":
        return {"x": "\ud800"}
    if kind == "deep":
        return {"deep": nested(5000)}
    raise ValueError(f"unknown kind {kind!r}")
