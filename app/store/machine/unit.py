"""One transaction's unit of work: what it changes beyond the rows it updates.

The state machine records here, as it goes, the events it emits, the queues to wake,
the nodes it released and, per run, the top-level nodes that ended. At the end the
machine accounts each touched run once, under its lock (dagq.store.machine.accounting),
and writes the events; nothing else carries state between the steps of a transition.

Also how an error is put in an event's data, and the wake-ups of a run just written.
(The rule that ends a run is the SQL function dagq.final_run_status, migration 007:
account_runs and the sweeper's heal both use it.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from dagq.models import WEBHOOK_EVENTS
from dagq.runtime.sqlfiles import queries
from dagq.store.tx import (
    QUEUED_CHANNEL,
    WEBHOOKS_CHANNEL,
    notify_after_commit,
    notify_event_streams,
    notify_runs_cancelled,
)


def error_data(error: dict[str, Any] | None) -> dict[str, Any]:
    return {"error": error} if error else {}


def run_created(run_id: uuid.UUID, queues: Iterable[str]) -> None:
    """After the commit: a new run's event streams, and the queues of its queued roots."""
    notify_event_streams([run_id])
    for queue in sorted(set(queues)):
        notify_after_commit(QUEUED_CHANNEL, queue)


@dataclass
class RunCounts:
    """Top-level nodes of one run that ended in this unit of work."""

    done: int = 0
    succeeded: int = 0
    failed: int = 0
    fail_run: bool = False
    error: dict[str, Any] | None = None


@dataclass
class UnitOfWork:
    """Events, wake-ups, released nodes and per-run counts of one transaction."""

    events: list[tuple[uuid.UUID, str | None, str, int | None, dict[str, Any]]] = field(
        default_factory=list
    )
    queues: set[str] = field(default_factory=set)  # wake these queues' consumers
    # Nodes released (queued) by this transaction, by queue, as (-priority, id): a
    # hand-off may lease them; the queues of those left over are woken.
    released: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    # Runs this transaction cancelled: workers running their nodes are told after commit.
    cancelled: set[uuid.UUID] = field(default_factory=set)
    _runs: dict[uuid.UUID, RunCounts] = field(default_factory=dict)

    def event(
        self, run_id: uuid.UUID, node_key: str | None, type_: str, attempt: int | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.events.append((run_id, node_key, type_, attempt, data or {}))

    def release(self, queue: str, priority: int, node_id: int) -> None:
        self.released.setdefault(queue, []).append((-priority, node_id))

    def touch(self, run_id: uuid.UUID) -> RunCounts:
        """Account this run at the end (and take its lock) even if none of its nodes
        ended."""
        counts = self._runs.get(run_id)
        if counts is None:
            counts = self._runs[run_id] = RunCounts()
        return counts

    def ended(self, run_id: uuid.UUID, outcome: str = "") -> None:
        """A top-level node of this run ended: `succeeded`, `failed`, or anything else
        (skipped, cancelled) that only counts as done."""
        counts = self.touch(run_id)
        counts.done += 1
        counts.succeeded += outcome == "succeeded"
        counts.failed += outcome == "failed"

    def run_error(self, run_id: uuid.UUID, error: dict[str, Any], *, fail_run: bool) -> None:
        """The error the run reports if it ends failed; `fail_run` ends it failed now."""
        counts = self.touch(run_id)
        counts.error = error
        counts.fail_run = counts.fail_run or fail_run

    def take_accounts(self) -> Jsonb | None:
        """The per-run counts for `account_runs` in run-id order (the lock order), once:
        they are cleared so a second accounting adds nothing."""
        if not self._runs:
            return None
        accounts = Jsonb([
            {"run_id": str(run_id), "done": c.done, "succeeded": c.succeeded,
             "failed": c.failed, "fail_run": c.fail_run, "error": c.error or None}
            for run_id, c in sorted(self._runs.items())])
        self._runs = {}
        return accounts

    def flush(self, cur: psycopg.Cursor[Any]) -> None:
        self.write_events(cur)
        self.notify()

    def write_events(self, cur: psycopg.Cursor[Any]) -> None:
        if not self.events:
            return
        cur.execute(queries()["insert_events"], {"events": Jsonb([
            {"run_id": str(run_id), "node_key": key, "type": type_, "attempt": attempt,
             "data": data}
            for run_id, key, type_, attempt, data in self.events])})
        notify_event_streams(event[0] for event in self.events)
        if any(event[2] in WEBHOOK_EVENTS for event in self.events):
            # Sent after the commit with the others (no NOTIFY inside the transaction:
            # see dagq.store.tx), whether or not a subscription matched: a wake-up for
            # nothing costs the deliverer one empty claim.
            notify_after_commit(WEBHOOKS_CHANNEL, "")
        self.events.clear()

    def notify(self) -> None:
        wake = self.queues | {queue for queue, ids in self.released.items() if ids}
        for queue in sorted(wake):
            notify_after_commit(QUEUED_CHANNEL, queue)
        if self.cancelled:
            notify_runs_cancelled(self.cancelled)
            self.cancelled.clear()
