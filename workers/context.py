"""The node an executor thread is running, for executors that need their attempt number."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from uuid import UUID


@dataclass(frozen=True)
class NodeContext:
    node_id: int
    run_id: UUID
    node_key: str
    attempt: int
    max_attempts: int


_local = threading.local()


def current() -> NodeContext:
    """The node being executed on this thread (only valid inside an executor)."""
    ctx = getattr(_local, "node", None)
    if ctx is None:
        raise RuntimeError("not inside a dagq executor")
    return ctx


def _set(ctx: NodeContext | None) -> None:
    _local.node = ctx


def current_node() -> NodeContext:
    """The public name (`from dagq import current_node`): the node this thread runs."""
    return current()
