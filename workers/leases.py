"""The leases this worker process holds, from lease to ack/nack/requeue.

A lease is one attempt of a node, keyed by (node id, version): the version is the fence
its outcome is recorded under. The same node can be in the book twice, when it was taken
back (say after a pause longer than the TTL) and leased again by this same worker: the
newer version supersedes the older, whose outcome is then discarded and which is
stopped, and nothing done for the old attempt (its late ack, nack or removal) touches
the new one.

The supervisor heartbeats all of them, enforces timeouts on the ones executing, and
interrupts the ones whose run stopped. Interrupts are asynchronous exceptions raised in
the executor's thread, and only while the lease is in its executing state (checked
under the book's lock); a pending interrupt is withdrawn if the executor finishes first.
"""

from __future__ import annotations

import ctypes
import enum
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dagq.models import LeasedNode
from dagq.usage import UsageRecord
from dagq.workers.errors import NodeCancelled
from dagq.workers.usage import UsageMeter

log = logging.getLogger("dagq.worker")

HELD_PER_PREFETCH = 4

LeaseKey = tuple[int, int]  # (node id, version): one attempt of a node


def lease_key(node: LeasedNode) -> LeaseKey:
    return node.id, node.version


def node_ids(keys: Iterable[LeaseKey]) -> list[int]:
    """The node ids of these attempts, each once, in order."""
    return list(dict.fromkeys(node_id for node_id, _ in keys))


def of_nodes(keys: Iterable[LeaseKey], wanted: Iterable[int]) -> set[LeaseKey]:
    """Those of these attempts that are attempts of the `wanted` nodes."""
    ids = frozenset(wanted)
    return {key for key in keys if key[0] in ids}


def _set_async_exc(thread_id: int, exc_type: type[BaseException] | None) -> None:
    # exc_type None withdraws a pending asynchronous exception.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type) if exc_type else None
    )


class LeaseState(enum.Enum):
    """Where one attempt is, from lease to release (the book's lock guards every move)."""

    HELD = "held"  # leased (prefetched), waiting for a worker thread
    EXECUTING = "executing"  # the executor runs on `thread_id`
    RAN = "ran"  # the executor returned or raised; its outcome is being checked
    FINISHING = "finishing"  # outcome handed to the committer: heartbeated, no prefetch slot
    LOST = "lost"  # taken back or superseded: its outcome will be discarded
    LOST_EXECUTING = "lost_executing"  # lost while its executor still runs (interrupted)
    LOST_FINISHING = "lost_finishing"  # lost while committing: the commit's fence decides


S = LeaseState
# Every allowed move: (state, event) -> next state. Anything else is refused (logged,
# state unchanged). A lease lost while FINISHING has nothing left to stop: its outcome
# is already handed over and the commit's fence decides. `end` in HELD is the end of an
# attempt whose interrupt was due before it started, so it never ran.
MOVES: dict[tuple[LeaseState, str], LeaseState] = {
    (S.HELD, "begin"): S.EXECUTING,
    (S.HELD, "end"): S.HELD,
    (S.HELD, "lose"): S.LOST,
    (S.EXECUTING, "end"): S.RAN,
    (S.EXECUTING, "lose"): S.LOST_EXECUTING,
    (S.RAN, "finish"): S.FINISHING,
    (S.RAN, "lose"): S.LOST,
    (S.FINISHING, "lose"): S.LOST_FINISHING,
    (S.LOST_FINISHING, "lose"): S.LOST_FINISHING,
    (S.LOST, "begin"): S.LOST_EXECUTING,  # the actor sees it lost and stops at once
    (S.LOST, "end"): S.LOST,
    (S.LOST, "lose"): S.LOST,
    (S.LOST_EXECUTING, "end"): S.LOST,
    (S.LOST_EXECUTING, "lose"): S.LOST_EXECUTING,
}
EXECUTING_STATES = frozenset({S.EXECUTING, S.LOST_EXECUTING})
LOST_STATES = frozenset({S.LOST, S.LOST_EXECUTING, S.LOST_FINISHING})
FINISHING_STATES = frozenset({S.FINISHING, S.LOST_FINISHING})


@dataclass
class Lease:
    """One attempt held. `state` moves only through `move` (under the book's lock);
    `thread_id` and `deadline` are set by the worker thread that begins it, `interrupt`
    by whichever thread interrupts it (supervisor, shutdown, a superseding lease),
    `result` by the worker thread once the executor returned."""

    node: LeasedNode
    queue: str
    leased_at: float = field(default_factory=time.monotonic)
    thread_id: int | None = None
    deadline: float | None = None
    began_at: float | None = None  # when its executor started (monotonic)
    state: LeaseState = LeaseState.HELD
    interrupt: type[BaseException] | None = None  # sent (or to apply when it starts)
    result: Any = None
    meter: UsageMeter | None = None  # its usage() calls (set when its executor begins)

    def usage(self) -> tuple[UsageRecord, ...]:
        """The attempt's usage records not yet handed to a write."""
        return self.meter.take() if self.meter is not None else ()

    @property
    def key(self) -> LeaseKey:
        return self.node.id, self.node.version

    @property
    def executing(self) -> bool:
        return self.state in EXECUTING_STATES

    @property
    def lost(self) -> bool:
        """Its outcome is discarded (the heartbeat found it gone, or a newer attempt of
        the node superseded it)."""
        return self.state in LOST_STATES

    @property
    def finishing(self) -> bool:
        return self.state in FINISHING_STATES

    def move(self, event: str) -> bool:
        """Apply `event` if allowed from the current state; False (and a log line) if
        refused. Called with the book's lock held."""
        after = MOVES.get((self.state, event))
        if after is None:
            log.warning("lease %s: %s refused in state %s", self.key, event, self.state.value)
            return False
        self.state = after
        return True


class LeaseBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[LeaseKey, Lease] = {}
        self._newest: dict[int, int] = {}  # node id -> newest version held
        self._released = threading.Condition(self._lock)
        self._handed_back: set[LeaseKey] = set()  # by a stopping worker (hand_back)

    def add(self, node: LeasedNode, queue: str) -> Lease:
        """Hold a new lease; an older attempt of the same node still held is lost."""
        lease = Lease(node, queue)
        with self._lock:
            self._leases[lease.key] = lease
            newest = self._newest.get(node.id)
            if newest is None or newest < node.version:
                self._newest[node.id] = node.version
                stale = self._leases.get((node.id, newest)) if newest is not None else None
            else:  # already superseded (cannot happen in order, but never trust order)
                stale = lease
            if stale is not None:
                self._lose(stale, NodeCancelled)
        return lease

    def get(self, key: LeaseKey) -> Lease | None:
        with self._lock:
            return self._leases.get(key)

    def remove(self, key: LeaseKey) -> None:
        with self._lock:
            lease = self._leases.pop(key, None)
            if lease is not None and self._newest.get(key[0]) == key[1]:
                del self._newest[key[0]]
            self._handed_back.discard(key)
            self._released.notify_all()

    def finishing(self, key: LeaseKey) -> None:
        """The node's outcome is handed over for commit: free its prefetch slot."""
        with self._lock:
            lease = self._leases.get(key)
            if lease is not None and lease.move("finish"):
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

    def keys(self) -> list[LeaseKey]:
        """Every attempt held, in the order it was leased."""
        with self._lock:
            return list(self._leases)

    def ids(self) -> list[int]:
        """The node ids held (each once, however many attempts are held)."""
        return node_ids(self.keys())

    def executing(self) -> int:
        with self._lock:
            return sum(1 for lease in self._leases.values() if lease.executing)

    def begin(self, key: LeaseKey, timeout_s: float) -> type[BaseException] | None:
        """The executor starts on this thread. Returns an interrupt already due."""
        with self._lock:
            lease = self._leases.get(key)
            if lease is None:
                return None
            lease.thread_id = threading.get_ident()
            lease.began_at = time.monotonic()
            lease.deadline = lease.began_at + timeout_s
            if lease.interrupt is not None:
                return lease.interrupt
            lease.move("begin")
            return None

    def end(self, key: LeaseKey) -> type[BaseException] | None:
        """The executor returned or raised. Withdraw a pending interrupt; report it."""
        with self._lock:
            lease = self._leases.get(key)
            if lease is None or not lease.executing:
                if lease is not None:
                    lease.move("end")
                return lease.interrupt if lease else None
            lease.move("end")
            if lease.interrupt is not None and lease.thread_id is not None:
                _set_async_exc(lease.thread_id, None)
            return lease.interrupt

    def interrupt(self, key: LeaseKey, exc_type: type[BaseException]) -> bool:
        """Interrupt the attempt: now if it is executing, else as soon as it starts."""
        with self._lock:
            lease = self._leases.get(key)
            return lease is not None and self._interrupt(lease, exc_type)

    def _interrupt(self, lease: Lease, exc_type: type[BaseException]) -> bool:
        if lease.interrupt is not None:
            return False
        lease.interrupt = exc_type
        if lease.executing and lease.thread_id is not None:
            _set_async_exc(lease.thread_id, exc_type)
        return True

    def overdue(self, now: float) -> list[LeaseKey]:
        with self._lock:
            return [
                lease.key for lease in self._leases.values()
                if lease.executing and lease.interrupt is None
                and lease.deadline is not None and lease.deadline < now
            ]

    def mark_lost_keys(self, keys: Iterable[LeaseKey]) -> set[LeaseKey]:
        """These attempts (those still held) are lost: their outcomes will be discarded.
        Returns those still to run or running: a finishing lease's outcome is already
        handed over (and, when it is gone, was committed or will be fenced off), so
        there is nothing to stop."""
        with self._lock:
            # (Those a stopping worker handed back are lost and interrupted already.)
            held = (self._leases.get(key) for key in keys if key not in self._handed_back)
            return {lease.key for lease in held if lease is not None and self._lose(lease)}

    def _lose(self, lease: Lease, stop: type[BaseException] | None = None) -> bool:
        """Mark `lease` lost; with `stop`, interrupt it unless it is finishing."""
        lease.move("lose")
        if lease.finishing:
            return False
        if stop is not None:
            self._interrupt(lease, stop)
        return True

    def executing_leases(self) -> list[Lease]:
        """The attempts whose executor runs now, in the order they were leased (for a
        stopping worker to say what it waits for; read their fields, never move them)."""
        with self._lock:
            return [lease for lease in self._leases.values() if lease.executing]

    def hand_back(self, stop: type[BaseException]) -> list[LeaseKey]:
        """A stopping worker gives up every attempt it holds that is not finishing: each
        is lost (its outcome will be discarded) and interrupted with `stop` (now if it
        executes, else as soon as it starts). Returns them, to be released in Postgres;
        a finishing one's outcome is already handed to the committer."""
        with self._lock:
            keys = [lease.key for lease in list(self._leases.values())
                    if not lease.finishing and self._lose(lease, stop)]
            self._handed_back.update(keys)
            return keys

    def holds_runs(self, run_ids: frozenset[uuid.UUID] | None) -> bool:
        """Whether an attempt held belongs to one of these runs (None: any run)."""
        with self._lock:
            return any(run_ids is None or lease.node.run_id in run_ids
                       for lease in self._leases.values())
