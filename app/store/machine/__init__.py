"""The run/node state machine, inside a caller's transaction: no pool, no retries, no
transaction of its own. Every method takes the caller's cursor and its unit of work
(`cur, work`) explicitly, so a repository's transaction keeps its statements, their
order and its flush points wherever the steps live.

- `unit`: one transaction's unit of work (events, wake-ups, released nodes, per-run
  counts), an error as event data, a new run's wake-ups
- `release`: a node's end moving through its run (release, skip, map expansion, waits)
- `children`: sub-workflow nodes' child runs (started, finished into their nodes,
  cancelled with their parents)
- `failures`: a failed attempt retried, failed for good or stopped
- `accounting`: runs accounted under their locks and finished; cancelling an open run
- `waits`: when a wait ends and with what (pure)
- `map_retry`: a retry of a map node's failed items only (its succeeded items kept)
- `admission`: new runs written (quotas, concurrency slots, children, wake-ups)

The parts reach each other through the `Machine` each of them holds.
"""

from __future__ import annotations

from dagq.store.machine.accounting import Accounting
from dagq.store.machine.admission import Admission
from dagq.store.machine.children import Children
from dagq.store.machine.failures import Failures
from dagq.store.machine.release import Release

__all__ = ["Machine"]


class Machine:
    """The parts of the state machine, each holding this object to reach the others.
    Stateless beyond them: one per Store."""

    def __init__(self) -> None:
        self.release = Release(self)
        self.children = Children(self)
        self.failures = Failures(self)
        self.accounting = Accounting(self)
        self.admission = Admission(self)
