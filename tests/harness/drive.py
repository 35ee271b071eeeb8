"""A driver that executes nodes through the repository as a worker would (no worker
process): `drive` until nothing is leasable, `complete` / `complete_many` one step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dagq.store import Completion, Store

Executor = Callable[[dict[str, Any]], Any]


def drive(
    repo: Store, executors: dict[str, Executor] | None = None, *, queue: str = "default",
    worker: str = "test-worker", batch: int = 16, max_rounds: int = 10_000,
) -> list[str]:
    """Lease and run nodes until nothing is leasable; return node keys in start order.

    Executors map node keys (or executor names) to functions of the payload; the default
    returns {"key": node_key}. Raising makes the attempt fail (retryably).
    """
    executors = executors or {}
    order: list[str] = []
    for _ in range(max_rounds):
        leased = repo.leases.lease(worker=worker, queue=queue, limit=batch, ttl_s=30)
        if not leased:
            return order
        for node in leased:
            order.append(node.node_key)
            fn = executors.get(node.node_key) or executors.get(node.executor)
            try:
                outputs = fn(node.payload()) if fn else {"key": node.node_key}
            except Exception as exc:  # noqa: BLE001 - the test decides what fails
                repo.leases.fail(node.id, node.version, {"type": type(exc).__name__,
                                                         "message": str(exc)})
            else:
                complete(repo, node.id, node.version, outputs)
    raise AssertionError("drive did not settle")


def complete(repo: Store, node_id: int, version: int, outputs: Any, *,
             wake_queue: str | None = None) -> bool:
    """One success through the workers' own path (no hand-off): False when fenced out."""
    return complete_many(repo, [Completion(node_id, version, outputs, wake_queue)])[0]


def complete_many(repo: Store, items: list[Completion]) -> list[bool]:
    """Many successes in one transaction, as the workers' committer records them."""
    return repo.leases.complete_and_lease(items, None)[0]
