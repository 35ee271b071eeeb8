"""dagq: a durable DAG job queue on PostgreSQL.

The public names are imported on first use (PEP 562), so `import dagq` stays cheap for
the CLI and child processes::

    from dagq import executor, FatalError, current_node, Client, AsyncClient, PostgresBroker
    from dagq import PostgresResultBackend  # for dramatiq.results.Results
    from dagq import PostgresRateLimiterBackend  # for dramatiq.rate_limits, GroupCallbacks
    from dagq import Workflow  # a workflow spec written in Python
    from dagq import submit_in  # a run written in the application's own transaction
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.3.0.dev0"

_PUBLIC = {
    "executor": "dagq.workers.registry",
    "FatalError": "dagq.workers.errors",
    "current_node": "dagq.workers.context",
    "PostgresBroker": "dagq.workers.broker",
    "PostgresResultBackend": "dagq.workers.results",
    "PostgresRateLimiterBackend": "dagq.workers.rate_limits",
    "Client": "dagq.client",
    "AsyncClient": "dagq.client",
    "Workflow": "dagq.spec.builder",
    "submit_in": "dagq.service.transactional",
    "usage_from": "dagq.usage",
}

__all__ = ["AsyncClient", "Client", "FatalError", "PostgresBroker",
           "PostgresRateLimiterBackend", "PostgresResultBackend", "Workflow", "current_node",
           "executor", "submit_in", "usage_from"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from dagq.client import AsyncClient, Client
    from dagq.service.transactional import submit_in
    from dagq.spec.builder import Workflow
    from dagq.usage import usage_from
    from dagq.workers.broker import PostgresBroker
    from dagq.workers.context import current_node
    from dagq.workers.errors import FatalError
    from dagq.workers.rate_limits import PostgresRateLimiterBackend
    from dagq.workers.registry import executor
    from dagq.workers.results import PostgresResultBackend


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'dagq' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
