"""The built-in executor names the workflow checks accept (dagq.spec.workflow) are exactly
those dagq.workers.builtins registers: the spec's list cannot drift from the code."""

from __future__ import annotations

from dagq.spec.workflow import BUILTIN_EXECUTORS, TEST_EXECUTORS
from dagq.workers import builtins
from dagq.workers.registry import registered


def test_the_builtin_names_are_the_registered_builtins() -> None:
    # (builtin.fail and builtin.crash register only with DAGQ_TEST_EXECUTORS=on.)
    names = {name for name in registered() if name.startswith("builtin.")}
    assert names - TEST_EXECUTORS == BUILTIN_EXECUTORS
    assert callable(builtins.fail) and callable(builtins.crash)
    assert {"builtin.fail", "builtin.crash"} == TEST_EXECUTORS
