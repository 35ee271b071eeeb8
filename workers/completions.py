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

One run's row held by another client (frozen, say, inside its own completion) must not
hold up the completions of other runs that share a batch with one of that run's: a
batch waits for a row lock only DAGQ_WORKER_LOCK_TIMEOUT_S, then each run's completions
are committed on their own, and those of a run still locked go to a second, patient
committer that waits for the row (retrying as long as transient errors are retried)
while this one goes on with the next batches. The patient one tries each held run's
completions in turn, each try waiting DAGQ_WORKER_LOCK_TIMEOUT_S, and puts a run still
locked back behind the others: a run locked for good holds up no other run, and its
completions are never dropped for a lock (they wait, their leases heartbeated, until
the row is free or the worker stops).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol

from dagq.models import LeasedNode
from dagq.store import Completion, Handoff, RunsLocked, Store
from dagq.store.tx import BAD_DATA
from dagq.store.tx import reason as bad_data_reason
from dagq.workers.errors import OutputError
from dagq.workers.outcomes import describe_error

log = logging.getLogger("dagq.completions")

MAX_BATCH = 256
# True: recorded; False: lease lost (fenced off); None: not recorded (failed).
Done = Callable[[bool | None], None]
# What writing a completion came to: its `Done` value, or APART: handed to the patient
# committer (which calls its `done`).
APART = "apart"
Outcome = bool | None | str
STOP_TIMEOUT_S = 5.0


class HandoffTarget(Protocol):
    def handoff(self) -> Handoff | None:
        """What to lease for this worker now (None: nothing)."""

    def take(self, nodes: list[LeasedNode]) -> None:
        """Run nodes leased by a completion's transaction."""


class CompletionBatcher(threading.Thread):
    def __init__(self, repo: Store, target: HandoffTarget | None = None, *,
                 patient: bool = False) -> None:
        """`patient`: the committer of completions whose run was locked: it waits for
        row locks (and writes each run's completions on their own)."""
        super().__init__(name="dagq-completions-locked" if patient else "dagq-completions",
                         daemon=True)
        self.repo = repo
        self.target = target
        self.patient = patient
        self._apart = None if patient else CompletionBatcher(repo, target, patient=True)
        # Runs whose completions the patient committer has (the two threads share it):
        # later completions of those runs go straight to it, not through another wait.
        self.held: set[object] = self._apart.held if self._apart else set()
        self._pending: queue.Queue[tuple[Completion, Done]] = queue.Queue()
        self._stopping = threading.Event()
        self.batches = self.written = 0  # how well group commit works (logged at stop)

    def start(self) -> None:
        super().start()
        if self._apart is not None:
            self._apart.start()

    def submit(self, completion: Completion, done: Done) -> None:
        """Record one success soon; `done` is called once it is committed (or not)."""
        if not self.is_alive():  # not started (tools, tests): write it now
            self.write([(completion, done)])
            return
        self._pending.put((completion, done))

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Write what was handed in, then stop; give up after `timeout` (a database that
        does not answer): what is left unwritten runs again once its leases expire."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)
            if self.is_alive():
                log.warning("completions still unwritten after %.0fs; they will run again",
                            timeout)
        if self._apart is not None:  # after this one: it may still hand some over
            self._apart.stop(max(0.0, deadline - time.monotonic()))
        if self.batches and not self.patient:
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
            # The patient committer writes each run on its own: a run locked for good
            # must not hold up (and at last drop) another locked run's completions.
            for part in _by_run(batch) if self.patient else [batch]:
                try:
                    self.write(part)
                except Exception:  # noqa: BLE001 - the committer thread must never die
                    log.exception("completion batch of %d failed", len(part))
                    if self.patient:
                        self.held.discard(_run_of(part[0][0]))

    def write(self, batch: list[tuple[Completion, Done]]) -> None:
        if self._apart is not None and self.held:
            batch = [item for item in batch if not self._held_apart(item)]
            if not batch:
                return
        self.batches += 1
        self.written += len(batch)
        results = self._record(batch)
        for (_, done), result in zip(batch, results, strict=True):
            if result != APART:
                done(result if isinstance(result, bool) else None)
        if self.patient and APART not in results:  # written (or given up on)
            self.held.discard(_run_of(batch[0][0]))  # its next ones go in batches again

    def _record(self, batch: list[tuple[Completion, Done]]) -> list[Outcome]:
        """Commit the batch; if a row's data cannot be stored, isolate it by bisection
        (about 2 log2(n) small transactions for one bad row) and fail only that node:
        one bad output never makes the others run again. If a run's row stays locked,
        commit the other runs apart (see the module's docstring)."""
        try:
            return self._commit([completion for completion, _ in batch])
        except RunsLocked as exc:
            self._take(exc.adopted)
            if self.patient:
                return self._wait_again(batch)
            return self._around_locked(batch, exc)
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

    def _around_locked(self, batch: list[tuple[Completion, Done]],
                       exc: RunsLocked) -> list[Outcome]:
        """A row lock of the batch was not granted in time: write each run's completions
        on their own; those of a run still locked go to the patient committer."""
        parts = _by_run(batch)
        if len(parts) > 1:
            outcome = {id(item): result for part in parts
                       for item, result in zip(part, self._record(part), strict=True)}
            return [outcome[id(item)] for item in batch]
        assert self._apart is not None  # the patient one waits again (_wait_again)
        log.warning("%d completion(s) of run %s wait for a row lock held by another "
                    "transaction (%s); other runs' completions go on meanwhile",
                    len(batch), batch[0][0].run_id, exc)
        self.held.add(_run_of(batch[0][0]))
        for completion, done in batch:
            self._apart.submit(completion, done)
        return [APART] * len(batch)

    def _wait_again(self, part: list[tuple[Completion, Done]]) -> list[Outcome]:
        """The patient committer: this run's row is still locked. Try it again after the
        other held runs (never drop it for a lock), unless the worker stops: then its
        leases expire and the nodes run again, as for any completion left unwritten."""
        if self._stopping.is_set():
            return [None] * len(part)
        for item in part:
            self._pending.put(item)
        return [APART] * len(part)

    def _held_apart(self, item: tuple[Completion, Done]) -> bool:
        """Hand `item` to the patient committer if its run's earlier ones are there."""
        if _run_of(item[0]) not in self.held or self._apart is None:
            return False
        self._apart.submit(*item)
        return True

    def _commit(self, completions: list[Completion]) -> list[bool | None]:
        # Only the main committer hands off: two threads sizing hand-offs from the same
        # free prefetch room at once would lease up to twice what the worker has room
        # for. What the patient one releases is leased by the consumers, as usual.
        handoff = self.target.handoff() if self.target and not self.patient else None
        recorded, leased = self.repo.leases.complete_and_lease(completions, handoff,
                                                               wait_for_locks=False)
        self._take(leased)
        return list(recorded)

    def _take(self, leased: list[LeasedNode]) -> None:
        if leased and self.target:
            try:
                self.target.take(leased)
            except Exception:  # noqa: BLE001 - never let a hand-off stop the committer
                log.exception("could not start %d handed-off node(s); their leases will "
                              "expire", len(leased))

    def _fail_unstorable(self, completion: Completion, exc: Exception) -> None:
        """Postgres refused this node's outputs (the worker's checks let them through):
        the attempt fails for good, with OutputError, like any output the checks catch."""
        reason = bad_data_reason(exc, detail=True)
        log.warning("node %s: its outputs cannot be stored, failing it: %s",
                    completion.node_id, reason)
        error = describe_error(OutputError(f"the executor's output cannot be stored: {reason}"))
        error.pop("traceback", None)  # ours, not the executor's: it would only mislead
        try:
            self.repo.leases.fail(completion.node_id, completion.version, error, retryable=False,
                                  wake_queue=completion.wake_queue, usage=completion.usage)
        except Exception as failed:  # noqa: BLE001 - then its lease expires
            log.warning("could not fail node %s: %s", completion.node_id, failed)


def _by_run(batch: list[tuple[Completion, Done]]) -> list[list[tuple[Completion, Done]]]:
    """The batch's completions grouped by run (one without a run id: on its own)."""
    parts: dict[object, list[tuple[Completion, Done]]] = {}
    for item in batch:
        parts.setdefault(_run_of(item[0]), []).append(item)
    return list(parts.values())


def _run_of(completion: Completion) -> object:
    return completion.run_id or ("node", completion.node_id)

