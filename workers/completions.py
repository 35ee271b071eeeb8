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

import psycopg

from dagq.models import LeasedNode
from dagq.store import Completion, Handoff, Store
from dagq.workers.errors import OutputError
from dagq.workers.outcomes import describe_error

log = logging.getLogger("dagq.completions")

MAX_BATCH = 256
# Errors a row's data causes (and that recur whenever it is written): Postgres refusing
# a value (SQLSTATE class 22: a NUL, a lone surrogate, a number out of range), or the
# driver unable to encode it as JSON (not JSON, circular, nested too deep).
BAD_DATA = (psycopg.DataError, TypeError, ValueError, RecursionError)
# True: recorded; False: lease lost (fenced off); None: not recorded (failed).
Done = Callable[[bool | None], None]
STOP_TIMEOUT_S = 5.0


class HandoffTarget(Protocol):
    def handoff(self) -> Handoff | None:
        """What to lease for this worker now (None: nothing)."""

    def take(self, nodes: list[LeasedNode]) -> None:
        """Run nodes leased by a completion's transaction."""


class CompletionBatcher(threading.Thread):
    def __init__(self, repo: Store, target: HandoffTarget | None = None) -> None:
        super().__init__(name="dagq-completions", daemon=True)
        self.repo = repo
        self.target = target
        self._pending: queue.Queue[tuple[Completion, Done]] = queue.Queue()
        self._stopping = threading.Event()
        self.batches = self.written = 0  # how well group commit works (logged at stop)

    def submit(self, completion: Completion, done: Done) -> None:
        """Record one success soon; `done` is called once it is committed (or not)."""
        if not self.is_alive():  # not started (tools, tests): write it now
            self.write([(completion, done)])
            return
        self._pending.put((completion, done))

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Write what was handed in, then stop; give up after `timeout` (a database that
        does not answer): what is left unwritten runs again once its leases expire."""
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)
            if self.is_alive():
                log.warning("completions still unwritten after %.0fs; they will run again",
                            timeout)
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
            try:
                self.write(batch)
            except Exception:  # noqa: BLE001 - the committer thread must never die
                log.exception("completion batch of %d failed", len(batch))

    def write(self, batch: list[tuple[Completion, Done]]) -> None:
        self.batches += 1
        self.written += len(batch)
        results = self._record(batch)
        for (_, done), result in zip(batch, results, strict=True):
            done(result)

    def _record(self, batch: list[tuple[Completion, Done]]) -> list[bool | None]:
        """Commit the batch; if a row's data cannot be stored, isolate it by bisection
        (about 2 log2(n) small transactions for one bad row) and fail only that node:
        one bad output never makes the others run again."""
        try:
            return self._commit([completion for completion, _ in batch])
        except BAD_DATA as exc:
            if len(batch) > 1:
                half = len(batch) // 2
                return self._record(batch[:half]) + self._record(batch[half:])
            self._fail_unstorable(batch[0][0], exc)
            return [None]
        except Exception as exc:  # noqa: BLE001 - the leases expire and the nodes rerun
            log.warning("could not record %d completion(s), they will run again: %s",
                        len(batch), exc)
            return [None] * len(batch)

    def _commit(self, completions: list[Completion]) -> list[bool | None]:
        handoff = self.target.handoff() if self.target else None
        recorded, leased = self.repo.complete_and_lease(completions, handoff)
        if leased and self.target:
            try:
                self.target.take(leased)
            except Exception:  # noqa: BLE001 - never let a hand-off stop the committer
                log.exception("could not start %d handed-off node(s); their leases will "
                              "expire", len(leased))
        return list(recorded)

    def _fail_unstorable(self, completion: Completion, exc: Exception) -> None:
        """Postgres refused this node's outputs (the worker's checks let them through):
        the attempt fails for good, with OutputError, like any output the checks catch."""
        reason = _reason(exc)
        log.warning("node %s: its outputs cannot be stored, failing it: %s",
                    completion.node_id, reason)
        error = describe_error(OutputError(f"the executor's output cannot be stored: {reason}"))
        error.pop("traceback", None)  # ours, not the executor's: it would only mislead
        try:
            self.repo.fail(completion.node_id, completion.version, error, retryable=False,
                           wake_queue=completion.wake_queue)
        except Exception as failed:  # noqa: BLE001 - then its lease expires
            log.warning("could not fail node %s: %s", completion.node_id, failed)


def _reason(exc: Exception) -> str:
    """Postgres' message and detail, without the context (the batch's JSON text)."""
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        detail = exc.diag.message_detail
        return exc.diag.message_primary + (f" ({detail})" if detail else "")
    return f"{type(exc).__name__}: {exc}"
