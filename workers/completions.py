"""Group commit for completions: worker threads hand in their node's outputs and move
on; one thread writes everything that has accumulated in a single transaction.

The same transaction leases, for this worker, the nodes those completions released
(as many as its prefetch has room for): a DAG's next level starts without waiting for
a notification and a lease transaction of its own.

Each commit (with synchronous_commit on) waits for a WAL flush; sharing it among all
the completions that arrived meanwhile is what keeps durable throughput high. Until its
completion is committed, a node keeps its lease in the worker's lease book, so it stays
heartbeated and counts against the prefetch; if the process dies first, the lease
expires and the node runs again (the same at-least-once rule as a crash mid-execution).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Protocol

from dagq.models import LeasedNode
from dagq.repository import Completion, Handoff, Repository

log = logging.getLogger("dagq.completions")

MAX_BATCH = 256
Done = Callable[[bool | None], None]  # True: recorded; False: lease lost; None: failed


class HandoffTarget(Protocol):
    def handoff(self) -> Handoff | None:
        """What to lease for this worker now (None: nothing)."""

    def take(self, nodes: list[LeasedNode]) -> None:
        """Run nodes leased by a completion's transaction."""


class CompletionBatcher(threading.Thread):
    def __init__(self, repo: Repository, target: HandoffTarget | None = None) -> None:
        super().__init__(name="dagq-completions", daemon=True)
        self.repo = repo
        self.target = target
        self._pending: queue.Queue[tuple[Completion, Done]] = queue.Queue()
        self._stopping = threading.Event()
        self.batches = self.written = 0  # how well group commit works (logged at stop)

    def submit(self, completion: Completion, done: Done) -> None:
        """Record one success soon; `done` is called once it is committed (or not)."""
        if not self.is_alive():  # not started (tools, tests): write it now
            self._write([(completion, done)])
            return
        self._pending.put((completion, done))

    def stop(self) -> None:
        """Write what was handed in, then stop."""
        self._stopping.set()
        if self.is_alive():
            self.join()
        if self.batches:
            log.info("recorded %d completion(s) in %d transaction(s), %.1f per commit",
                     self.written, self.batches, self.written / self.batches)

    def run(self) -> None:
        while not (self._stopping.is_set() and self._pending.empty()):
            try:
                batch = [self._pending.get(timeout=0.1)]
            except queue.Empty:
                continue
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            self._write(batch)

    def _write(self, batch: list[tuple[Completion, Done]]) -> None:
        self.batches += 1
        self.written += len(batch)
        leased: list[LeasedNode] = []
        try:
            handoff = self.target.handoff() if self.target else None
            recorded, leased = self.repo.complete_and_lease(
                [completion for completion, _ in batch], handoff)
            results: list[bool | None] = list(recorded)
        except Exception as exc:  # noqa: BLE001 - the leases expire and the nodes rerun
            log.warning("could not record %d completion(s), they will run again: %s",
                        len(batch), exc)
            results = [None] * len(batch)
        if leased and self.target:
            try:
                self.target.take(leased)
            except Exception:  # noqa: BLE001 - never let a hand-off stop the committer
                log.exception("could not start %d handed-off node(s); their leases will "
                              "expire", len(leased))
        for (_, done), result in zip(batch, results, strict=True):
            done(result)
