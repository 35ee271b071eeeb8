"""Concurrency keys: at most `limit` open runs per (tenant, key) (migration 021).

A run's key is `path=value` from its inputs (`inputs.conversation_id=c-42`); runs of
any workflow that name the same key share its slots. A submit of keyed runs is one
transaction: for `cancel_running`, the open runs of its keys are cancelled first, key
by key in lock-key order (the usual lock order: node rows, the run row, then the key
lock in the run-end trigger);
then it takes the keys' advisory locks (in lock-key order), counts the open runs of each
key and decides each run in submission order:

- room left and nobody waiting: the run holds a slot (written as usual);
- else `queue`: it waits for a slot, `queued` with `concurrency_waiting` and its roots
  `pending` (no node of it can be leased);
- else `cancel_new`: it is written waiting and cancelled at once (its 201 says
  `cancelled`).

When a run of a key ends, the trigger `runs_concurrency_ended` starts the oldest
waiting runs that fit in the same transaction, under the same lock; the sweeper's
`start_free_slots` is the safety net for a waiting run that was locked at that moment.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import psycopg

from dagq.errors import Conflict, InvalidRequest
from dagq.runtime.sqlfiles import queries
from dagq.spec.workflow import MAX_CONCURRENCY_KEY_BYTES, Concurrency
from dagq.store.machine.accounting import Finished, cancel_open_run

if TYPE_CHECKING:
    from dagq.store.new_runs import NewRun

ADMIT, WAIT, CANCEL = "admit", "wait", "cancel"
Key = tuple[str, str]  # (tenant, concurrency key)


def waiting(run: NewRun) -> NewRun:
    """The run held back for a slot: its roots pending, no node_queued events yet."""
    nodes = [{**node, "status": "pending"} if node["status"] == "queued" else node
             for node in run.nodes]
    events = [{**event, "data": {**event.get("data", {}), "waiting_for_slot": True}}
              if event["type"] == "run_queued" else event
              for event in run.events if event["type"] != "node_queued"]
    return dataclasses.replace(run, nodes=nodes, events=events, concurrency_waiting=True)


def plan(runs: list[NewRun], fresh: list[int], state: dict[Key, tuple[int, int]]) -> dict[
        int, str]:
    """Each fresh keyed run's fate, in submission order, from each key's (holding a slot,
    waiting) counts. A later `cancel_running` run of a key cancels the earlier ones."""
    active = {key: counts[0] for key, counts in state.items()}
    queued = {key: counts[1] for key, counts in state.items()}
    members: dict[Key, list[int]] = defaultdict(list)
    fate: dict[int, str] = {}
    for i in fresh:
        run = runs[i]
        assert run.concurrency is not None and run.concurrency_key is not None
        key = (run.tenant, run.concurrency_key)
        limit, mode = run.concurrency.limit, run.concurrency.on_limit
        if mode == "cancel_running":
            fate.update((j, CANCEL) for j in members[key])
            active[key], queued[key] = 1, 0
            fate[i] = ADMIT
        elif queued[key] == 0 and active[key] < limit:
            active[key] += 1
            fate[i] = ADMIT
        elif mode == "queue":
            queued[key] += 1
            fate[i] = WAIT
        else:
            fate[i] = CANCEL
        members[key].append(i)
    return fate


@dataclasses.dataclass
class Slots:
    """One group's keyed runs, decided under their keys' locks (see the module doc)."""

    runs: list[NewRun]
    fate: dict[int, str]
    finished: Finished  # what a cancelled run's end does to its parent node and children

    @classmethod
    def take(cls, cur: psycopg.Cursor[Any], runs: list[NewRun],
             skip: list[Any], finished: Finished) -> Slots:
        """Decide the keyed runs not refused already (`skip[i]` not None); returns the
        runs as they are to be written. `finished`: the machine's
        `accounting.cancelled_run_finished`."""
        keyed = [i for i, run in enumerate(runs)
                 if run.concurrency_key is not None and skip[i] is None]
        fresh = _fresh(cur, runs, keyed)
        replacing = _replacing(runs, fresh)
        own = {run.id for run in runs}  # (a retry whose first try committed wrote them)
        _cancel_open(cur, replacing, finished, own)
        keys = sorted({(runs[i].tenant, runs[i].concurrency_key or "") for i in fresh})
        if not keys:
            return cls(runs, {}, finished)
        tenants, names = [k[0] for k in keys], [k[1] for k in keys]
        q = queries()
        cur.execute(q["lock_concurrency_keys"], {"tenants": tenants, "keys": names})
        _cancel_open(cur, replacing, finished, own)  # any committed before the lock was ours
        state = {(row["tenant"], row["key"]): (row["active"], row["waiting"]) for row in
                 cur.execute(q["concurrency_state"], {"tenants": tenants, "keys": names})}
        fate = plan(runs, fresh, state)
        written = [waiting(run) if fate.get(i) in (WAIT, CANCEL) else run
                   for i, run in enumerate(runs)]
        return cls(written, fate, finished)

    def cancel_refused(self, cur: psycopg.Cursor[Any], created: set[int]) -> set[int]:
        """Cancel the created runs refused a slot (cancel_new, or replaced by a later
        cancel_running run of this group); their indexes. Then the slots planned for runs
        not written (stale, or their event key taken meanwhile) go to who waits."""
        cancelled = {i for i, fate in self.fate.items() if fate == CANCEL and i in created}
        for i in sorted(cancelled):
            run = self.runs[i]
            assert run.concurrency is not None
            cancel_open_run(cur, run.id, {"reason": "concurrency limit",
                                          "concurrency_key": run.concurrency_key,
                                          "on_limit": run.concurrency.on_limit},
                            self.finished)
        unused = sorted({(self.runs[i].tenant, self.runs[i].concurrency_key or "")
                         for i, fate in self.fate.items()
                         if fate == ADMIT and i not in created})
        for tenant, key in unused:  # (under the key's lock, held since take)
            cur.execute(queries()["start_waiting_runs_of_key"], {"tenant": tenant, "key": key})
        return cancelled


def _fresh(cur: psycopg.Cursor[Any], runs: list[NewRun], keyed: list[int]) -> list[int]:
    """The keyed runs that will be written: not holding an event key a run (or an earlier
    run of this group) already holds."""
    with_keys = [i for i in keyed if runs[i].event_key is not None]
    taken: set[tuple[str, str | None]] = set()
    if with_keys:
        taken = {(row["tenant"], row["event_key"]) for row in cur.execute(
            queries()["taken_event_keys"], {
                "tenants": [runs[i].tenant for i in with_keys],
                "event_keys": [runs[i].event_key for i in with_keys]})}
    fresh = []
    for i in keyed:
        held = (runs[i].tenant, runs[i].event_key)
        if runs[i].event_key is not None:
            if held in taken:
                continue
            taken.add(held)
        fresh.append(i)
    return fresh


def _replacing(runs: list[NewRun], fresh: list[int]) -> dict[Key, uuid.UUID]:
    """The keys a cancel_running run of this group takes over: the last such run's id."""
    return {(runs[i].tenant, runs[i].concurrency_key or ""): runs[i].id for i in fresh
            if runs[i].concurrency is not None
            and runs[i].concurrency.on_limit == "cancel_running"}


def _cancel_open(cur: psycopg.Cursor[Any], replacing: dict[Key, uuid.UUID],
                 finished: Finished,
                 own: frozenset[uuid.UUID] | set[uuid.UUID] = frozenset()) -> None:
    """Cancel the open runs of these keys (for the new run that replaces them), but
    not `own` (the submit's own runs); key by key in lock order (see open_runs_of_keys)."""
    if not replacing:
        return
    keys = sorted(replacing)
    for row in cur.execute(queries()["open_runs_of_keys"], {
            "tenants": [k[0] for k in keys], "keys": [k[1] for k in keys]}).fetchall():
        if row["id"] in own:
            continue
        cancel_open_run(cur, row["id"], {
            "reason": "replaced by a newer run", "concurrency_key": row["key"],
            "replaced_by": str(replacing[(row["tenant"], row["key"])])}, finished)


def rerun_concurrency(spec_concurrency: Concurrency | None, source: dict[str, Any],
                      inputs: Any) -> tuple[Concurrency | None, str | None]:
    """A rerun's concurrency and key: the workflow's, or (when the original's key came
    with its submit) the same path and limit; the key read from the rerun's inputs."""
    concurrency = spec_concurrency
    held = source.get("concurrency_key")
    if held is not None and (concurrency is None
                             or not held.startswith(f"{concurrency.key}=")):
        concurrency = Concurrency(key=held.split("=", 1)[0],
                                  limit=source["concurrency_limit"] or 1)
    key = concurrency.key_of(inputs) if concurrency is not None else None
    if held is not None and inputs == source.get("inputs"):
        key = held  # the same inputs: the same key (a path may hold a '=')
    if key is not None and len(key.encode()) > MAX_CONCURRENCY_KEY_BYTES:
        raise InvalidRequest(f"the run's concurrency key ({key[:60]}...) is longer than "
                             f"{MAX_CONCURRENCY_KEY_BYTES} bytes")
    return (concurrency, key) if key is not None else (None, None)


def take_for_rerun(cur: psycopg.Cursor[Any], run_id: uuid.UUID, tenant: str,
                   concurrency: Concurrency, key: str, finished: Finished) -> None:
    """A rerun starts at once (its copied nodes end in its first transaction), so it
    cannot wait for a slot: it takes one of its key now, or Conflict (the key is full,
    or has runs waiting); `cancel_running` cancels the key's open runs first (in the
    submit's lock order: their rows, then the key's lock)."""
    q = queries()
    replacing = {(tenant, key): run_id} if concurrency.on_limit == "cancel_running" else {}
    _cancel_open(cur, replacing, finished, {run_id})  # (a retry whose first try committed wrote it)
    cur.execute(q["lock_concurrency_keys"], {"tenants": [tenant], "keys": [key]})
    _cancel_open(cur, replacing, finished, {run_id})
    state = cur.execute(q["concurrency_state"], {"tenants": [tenant], "keys": [key]}
                        ).fetchone()
    if not replacing and (state["waiting"] or state["active"] >= concurrency.limit):
        raise Conflict(f"the concurrency key {key[:200]} is at its limit "
                       f"({concurrency.limit} open run(s)): rerun once a slot frees",
                       {"concurrency_key": key, "limit": concurrency.limit,
                        "active": state["active"], "waiting": state["waiting"]})
