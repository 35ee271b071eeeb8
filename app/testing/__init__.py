"""dagq.testing: test your executors without a worker, and your project against a real
dagq stack (docs/testing.md).

    from dagq.testing import node, run_executor, arun_executor, signal_outputs
    from dagq.testing import Stack            # embedded Postgres + workers (+ the API)

The pytest fixtures are in `dagq.testing.pytest_plugin`: list it in your conftest.py's
`pytest_plugins`. The names are imported on first use, so importing this package
starts nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "node": "dagq.testing.fake", "run_executor": "dagq.testing.fake",
    "arun_executor": "dagq.testing.fake", "signal_outputs": "dagq.testing.fake",
    "Chunk": "dagq.testing.fake", "FakeNode": "dagq.testing.fake",
    "ExecutorResult": "dagq.testing.fake",
    "Stack": "dagq.testing.stack", "StackError": "dagq.testing.stack",
}

__all__ = ["Chunk", "ExecutorResult", "FakeNode", "Stack", "StackError", "arun_executor", "node",
           "run_executor", "signal_outputs"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from dagq.testing.fake import (
        Chunk,
        ExecutorResult,
        FakeNode,
        arun_executor,
        node,
        run_executor,
        signal_outputs,
    )
    from dagq.testing.stack import Stack, StackError


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'dagq.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
