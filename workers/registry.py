"""The `@executor` decorator and the registry of node executors in this process."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dagq.models import ExecutorInfo
from dagq.spec.workflow import QUEUE_PATTERN

ExecutorFn = Callable[[dict[str, Any]], Any]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$")
_QUEUE = re.compile(QUEUE_PATTERN)  # the workflow spec's rule: one source


@dataclass(frozen=True)
class ExecutorDef:
    name: str
    fn: ExecutorFn
    queue: str = "default"
    max_attempts: int | None = None
    timeout_s: float | None = None
    concurrency: int | None = None
    rate_per_s: float | None = None

    def info(self) -> ExecutorInfo:
        return ExecutorInfo(
            name=self.name, queue=self.queue, max_attempts=self.max_attempts,
            timeout_s=self.timeout_s, concurrency=self.concurrency, rate_per_s=self.rate_per_s,
        )


_registry: dict[str, ExecutorDef] = {}


def executor(
    name: str, *, queue: str = "default", max_attempts: int | None = None,
    timeout_s: float | None = None, concurrency: int | None = None,
    rate_per_s: float | None = None,
) -> Callable[[ExecutorFn], ExecutorFn]:
    """Declare a node executor: a function of `{run, deps, params}` returning a dict.

    `concurrency` caps running tasks of this executor across all workers; `rate_per_s`
    caps how many start per second across all workers.
    """
    if not _NAME.match(name):
        raise ValueError(f"executor name {name!r} must match {_NAME.pattern}")
    if not _QUEUE.match(queue):
        raise ValueError(f"queue name {queue!r} must match {_QUEUE.pattern}")
    for label, value in (("max_attempts", max_attempts), ("concurrency", concurrency)):
        if value is not None and value < 1:
            raise ValueError(f"{label} must be at least 1")
    for label, number in (("timeout_s", timeout_s), ("rate_per_s", rate_per_s)):
        if number is not None and number <= 0:
            raise ValueError(f"{label} must be positive")

    def register(fn: ExecutorFn) -> ExecutorFn:
        existing = _registry.get(name)
        if existing is not None and _origin(existing.fn) != _origin(fn):
            raise ValueError(f"executor {name!r} is already declared by {existing.fn!r}")
        _registry[name] = ExecutorDef(name, fn, queue, max_attempts, timeout_s, concurrency,
                                      rate_per_s)
        return fn

    return register


def _origin(fn: ExecutorFn) -> tuple[str, str]:
    # The same function re-declared (e.g. its module reloaded) is not a conflict.
    return getattr(fn, "__module__", ""), getattr(fn, "__qualname__", repr(fn))


def registered() -> dict[str, ExecutorDef]:
    return dict(_registry)
