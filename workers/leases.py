"""The leases this worker process holds, from lease to ack/nack/requeue.

The supervisor heartbeats all of them, enforces timeouts on the ones executing, and
interrupts the ones whose run stopped. Interrupts are asynchronous exceptions raised in
the executor's thread, and only while the lease is in its executing state (checked
under the book's lock); a pending interrupt is withdrawn if the executor finishes first.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dagq.models import LeasedNode

HELD_PER_PREFETCH = 4


def _set_async_exc(thread_id: int, exc_type: type[BaseException] | None) -> None:
    # exc_type None withdraws a pending asynchronous exception.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type) if exc_type else None
    )


@dataclass
class Lease:
    node: LeasedNode
    queue: str
    leased_at: float = field(default_factory=time.monotonic)
    thread_id: int | None = None
    deadline: float | None = None
    executing: bool = False
    interrupt: type[BaseException] | None = None  # sent (or to apply when it starts)
    result: Any = None
    lost: bool = False  # the heartbeat found the lease gone: its outcome is discarded
    # The executor is done and its outcome is being committed: the lease is still held
    # (and heartbeated) but no longer takes a prefetch slot, so the next batch is leased
    # while the last one's completions are written.
    finishing: bool = False


class LeaseBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[int, Lease] = {}
        self._released = threading.Condition(self._lock)

    def add(self, node: LeasedNode, queue: str) -> Lease:
        lease = Lease(node, queue)
        with self._lock:
            self._leases[node.id] = lease
        return lease

    def get(self, node_id: int) -> Lease | None:
        with self._lock:
            return self._leases.get(node_id)

    def remove(self, node_id: int) -> None:
        with self._lock:
            self._leases.pop(node_id, None)
            self._released.notify_all()

    def finishing(self, node_id: int) -> None:
        """The node's outcome is handed over for commit: free its prefetch slot."""
        with self._lock:
            lease = self._leases.get(node_id)
            if lease is not None:
                lease.finishing = True
                self._released.notify_all()

    def room(self, queue: str, prefetch: int) -> int:
        """How many more leases of `queue` to take: `prefetch` minus those not yet
        finishing, and never more than HELD_PER_PREFETCH x `prefetch` held in all (should
        committing fall behind, finishing leases would otherwise pile up)."""
        with self._lock:
            return self._room(queue, prefetch)

    def _room(self, queue: str, prefetch: int) -> int:
        mine = [le for le in self._leases.values() if le.queue == queue]
        active = sum(1 for le in mine if not le.finishing)
        return min(prefetch - active, HELD_PER_PREFETCH * prefetch - len(mine))

    def poke(self) -> None:
        """Wake `wait_for_room` callers to re-check their `ready` condition."""
        with self._lock:
            self._released.notify_all()

    def wait_for_room(self, queue: str, prefetch: int, need: int, timeout: float,
                      ready: Callable[[], int] | None = None) -> bool:
        """Block until there is room for `need` more leases of `queue`, or `ready()` is
        true (or timeout)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._room(queue, prefetch) < need and not (ready and ready()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._released.wait(left)
            return True

    def ids(self) -> list[int]:
        with self._lock:
            return list(self._leases)

    def executing(self) -> int:
        with self._lock:
            return sum(1 for lease in self._leases.values() if lease.executing)

    def begin(self, node_id: int, timeout_s: float) -> type[BaseException] | None:
        """The executor starts on this thread. Returns an interrupt already due."""
        with self._lock:
            lease = self._leases.get(node_id)
            if lease is None:
                return None
            lease.thread_id = threading.get_ident()
            lease.deadline = time.monotonic() + timeout_s
            if lease.interrupt is not None:
                return lease.interrupt
            lease.executing = True
            return None

    def end(self, node_id: int) -> type[BaseException] | None:
        """The executor returned or raised. Withdraw a pending interrupt; report it."""
        with self._lock:
            lease = self._leases.get(node_id)
            if lease is None or not lease.executing:
                return lease.interrupt if lease else None
            lease.executing = False
            if lease.interrupt is not None and lease.thread_id is not None:
                _set_async_exc(lease.thread_id, None)
            return lease.interrupt

    def interrupt(self, node_id: int, exc_type: type[BaseException]) -> bool:
        """Interrupt the node: now if it is executing, else as soon as it starts."""
        with self._lock:
            lease = self._leases.get(node_id)
            if lease is None or lease.interrupt is not None:
                return False
            lease.interrupt = exc_type
            if lease.executing and lease.thread_id is not None:
                _set_async_exc(lease.thread_id, exc_type)
            return True

    def overdue(self, now: float) -> list[int]:
        with self._lock:
            return [
                lease.node.id for lease in self._leases.values()
                if lease.executing and lease.interrupt is None
                and lease.deadline is not None and lease.deadline < now
            ]

    def mark_lost(self, node_ids: frozenset[int]) -> set[int]:
        """Their outcomes will be discarded. Returns those still to run or running: a
        finishing lease's outcome is already handed over (and, when it is gone, was
        committed or will be fenced off), so there is nothing to stop."""
        active: set[int] = set()
        with self._lock:
            for node_id in node_ids:
                lease = self._leases.get(node_id)
                if lease is not None:
                    lease.lost = True
                    if not lease.finishing:
                        active.add(node_id)
        return active

    def executing_ids(self) -> list[int]:
        with self._lock:
            return [lease.node.id for lease in self._leases.values() if lease.executing]
