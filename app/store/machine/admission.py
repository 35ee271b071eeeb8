"""New runs written inside a caller's transaction: the tenants' quotas admitted, the
concurrency keys' slots taken, one statement for every run, children started, and the
queues and event streams woken at the commit. The API's group commit
(SubmissionRepo.submit_runs), an event's runs (TriggerRepo) and dagq.submit_in all
write through here, so a run is the same rows whichever way it came."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from dagq.errors import Conflict, DagqError, QuotaExceeded, RateLimited
from dagq.models import SubmitResult
from dagq.runtime.sqlfiles import queries
from dagq.store.concurrency import Slots
from dagq.store.new_runs import NewRun, Stale
from dagq.store.tx import QUEUED_CHANNEL, notify_after_commit, notify_event_streams

if TYPE_CHECKING:
    from dagq.store.machine import Machine

NOTIFY_RUNS_AT_ONCE = 100  # an event-stream wake-up names at most this many runs

Outcome = SubmitResult | DagqError


class Admission:
    """Writing new runs in the caller's transaction (see the module docstring)."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine

    def write_runs(self, cur: psycopg.Cursor[Any], runs: list[NewRun],
                   limited: frozenset[str] = frozenset(),
                   ) -> tuple[list[NewRun], list[Outcome | None], list[int]]:
        """The runs written inside the caller's transaction (`cur`'s; the API's group
        commit, an event's runs, dagq.submit_in): the runs as written (a concurrency
        slot may change one), each one's outcome so far, and the indexes of those whose
        id or event key another run holds (for `resolve_taken`). Queues and event
        streams are woken when that transaction commits."""
        q = queries()
        outcomes: list[Outcome | None] = [None] * len(runs)
        asked = Counter(run.tenant for run in runs if run.tenant in limited)
        if asked:
            outcomes = list(_admit(cur, runs, asked))
        slots = Slots.take(cur, runs, outcomes, self.m.accounting.cancelled_run_finished) \
            if any(run.concurrency_key is not None for run in runs) else None
        runs = slots.runs if slots else runs
        payload = Jsonb([run.row(i) for i, run in enumerate(runs) if outcomes[i] is None])
        rows = cur.execute(q["submit_runs"], {"runs": payload}).fetchall()
        created = [runs[row["i"]] for row in rows if row["created"]]
        if any(run.children for run in created):
            self.m.accounting.start_new_children(
                cur, [run.id for run in created if run.children])
        for row in rows:
            if row["stale"]:
                outcomes[row["i"]] = Stale("a newer version of the workflow exists")
            elif row["created"]:
                run = runs[row["i"]]
                outcomes[row["i"]] = SubmitResult(
                    run_id=run.id, status="running" if run.started else "queued",
                    created=True)
        if slots:
            for i in slots.cancel_refused(cur, {i for i, o in enumerate(outcomes)
                                                if isinstance(o, SubmitResult)}):
                outcomes[i] = SubmitResult(run_id=runs[i].id, status="cancelled",
                                           created=True)
        self._wake(created)
        written = {row["i"] for row in rows}
        taken = [i for i, outcome in enumerate(outcomes) if outcome is None and i in written]
        return runs, outcomes, taken

    @staticmethod
    def _wake(created: list[NewRun]) -> None:
        """After the commit: the new runs' event streams, the queues of their roots."""
        for start in range(0, len(created), NOTIFY_RUNS_AT_ONCE):
            notify_event_streams(run.id for run in created[start:start + NOTIFY_RUNS_AT_ONCE])
        for queue in sorted(set().union(*(run.queues for run in created))):
            notify_after_commit(QUEUED_CHANNEL, queue)

    @staticmethod
    def resolve_taken(cur: psycopg.Cursor[Any], runs: list[NewRun], taken: list[int],
                       outcomes: list[Outcome | None]) -> None:
        """The runs that hold these submissions' keys (committed: read by a statement
        after the write, which waited for any concurrent writer of the same key)."""
        rows = cur.execute(queries()["runs_taken"], {
            "i": taken, "ids": [runs[i].id for i in taken],
            "tenants": [runs[i].tenant for i in taken],
            "event_keys": [runs[i].event_key for i in taken],
        }).fetchall()
        for row in rows:
            run = runs[row["i"]]
            if row["fingerprint"] != run.fingerprint:
                outcomes[row["i"]] = Conflict(
                    f"event key {run.event_key!r} was already used for a different workflow "
                    "or inputs", {"run_id": str(row["id"])})
            else:  # its own row (a retried write) is the one it created
                outcomes[row["i"]] = SubmitResult(run_id=row["id"], status=row["status"],
                                                  created=row["id"] == run.id)

    def write_resolved(self, cur: psycopg.Cursor[Any], runs: list[NewRun],
                       limited: frozenset[str] = frozenset()) -> list[Outcome]:
        """write_runs with the taken keys resolved in the same transaction (an event's
        runs, dagq.submit_in: nothing commits in between)."""
        runs, outcomes, taken = self.write_runs(cur, runs, limited)
        if taken:
            self.resolve_taken(cur, runs, taken, outcomes)
        return finished(outcomes)


def finished(outcomes: list[Outcome | None]) -> list[Outcome]:
    """Every outcome, a run whose key holder vanished in between as a retryable 409."""
    return [outcome if outcome is not None else
            Conflict("the run for this event key was removed while submitting; retry")
            for outcome in outcomes]


def _admit(cur: psycopg.Cursor[Any], runs: list[NewRun],
           asked: Counter[str]) -> list[Outcome | None]:
    """Per run: None if its tenant's quotas let it in (in submission order), else its 429
    (QuotaExceeded or RateLimited, with retry_after)."""
    tenants = sorted(asked)
    cur.execute(queries()["lock_tenants"], {"tenants": tenants})
    rows = cur.execute(queries()["admit_runs"], {
        "tenants": tenants, "asked": [asked[t] for t in tenants]}).fetchall()
    verdicts = {row["tenant"]: row for row in rows}
    left = {tenant: verdict["admitted"] for tenant, verdict in verdicts.items()}
    refusals: list[Outcome | None] = []
    for run in runs:
        if run.tenant not in left:
            refusals.append(None)
        elif left[run.tenant] > 0:
            left[run.tenant] -= 1
            refusals.append(None)
        else:
            refusals.append(_refusal(run.tenant, verdicts[run.tenant]))
    return refusals


def _refusal(tenant: str, verdict: dict[str, Any]) -> RateLimited:
    retry = verdict["retry_after_s"] or 1
    details = {"tenant": tenant, "retry_after_s": retry}
    error: RateLimited
    if verdict["refused_by"] == "quota_exceeded":
        error = QuotaExceeded(f"tenant {tenant!r} has as many queued runs as its "
                              "max_queued_runs allows; retry once some have started", details)
    else:
        error = RateLimited(f"tenant {tenant!r} is over its submit rate; retry in {retry}s",
                            details)
    error.retry_after = retry
    return error
