"""A worker's side: lease, heartbeat, complete (with the hand-off), fail, requeue."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from dagq.models import (
    HeartbeatResult,
    LeasedNode,
)
from dagq.runtime.sqlfiles import queries
from dagq.store.budgets import enforce_budgets
from dagq.store.lock_waits import LockDodge, RunsLocked
from dagq.store.machine import Machine
from dagq.store.machine.unit import UnitOfWork
from dagq.store.tx import (
    QUEUED_CHANNEL,
    STALE_COMPLETIONS,
    Database,
    notify_after_commit,
    notify_event_streams,
    transient,
)
from dagq.store.usage import charge_usage
from dagq.usage import UsageRecord

log = logging.getLogger("dagq.store")


@dataclass(frozen=True)
class Handoff:
    """Lease what a completion releases for the completing worker, in the same
    transaction: `room` free prefetch slots per queue, for the (uncapped) `executors`
    it serves."""

    worker: str
    ttl_s: float
    executors: list[str]
    room: dict[str, int]


@dataclass
class HandedOff:
    """The rows the last try of a completion leased to its worker in its hand-off, kept
    across the transient retries of one call: when a try's COMMIT went through but its
    answer was lost, the next try finds those leases still held and runs them rather
    than let them expire (`_adopt`). Owned by one `complete_and_lease` call."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    over_budget: list[uuid.UUID] = field(default_factory=list)  # runs its usage took past


@dataclass(frozen=True)
class Completion:
    """One successful attempt to record: the fence (id, version) and its outputs."""

    node_id: int
    version: int
    outputs: Any
    wake_queue: str | None = None
    run_id: uuid.UUID | None = None  # its run (the batcher commits locked runs apart)
    usage: tuple[UsageRecord, ...] = ()  # the attempt's usage() calls, written with it


def _allowance(cap: dict[str, Any], running: int) -> tuple[int, float | None]:
    """How many more tasks a capped executor may start now, and its refilled tokens.

    Concurrency: `concurrency - running`. Rate: a token bucket holding at most one
    second's worth (`rate_per_s`, at least 1), refilled at `rate_per_s` per second.
    """
    allowance = 1_000_000
    if cap["concurrency"] is not None:
        allowance = cap["concurrency"] - running
    tokens = None
    if cap["rate_per_s"] is not None:
        rate = cap["rate_per_s"]
        burst = max(1.0, rate)
        tokens = burst if cap["tokens"] is None else min(
            burst, cap["tokens"] + rate * float(cap["idle_s"]))
        allowance = min(allowance, int(tokens))
    return max(0, allowance), tokens


class TenantCaps:
    """Whether any tenant has max_running_nodes, read at most every `ttl_s` seconds: only
    then does a lease lock the capped tenants' rows first (an extra statement). A tenant
    capped meanwhile is not leased until the next read (lease_nodes skips a capped
    tenant whose row the lease does not hold), so a cap is never overshot. One per
    process's Store, shared by the Stores derived from it; a tenant's change through
    any of them forgets it (TenantRepo's `on_change`)."""

    def __init__(self, ttl_s: float = 2.0) -> None:
        self.ttl_s = ttl_s
        self._until = 0.0
        self._any = False

    def any(self, db: Database) -> bool:
        now = time.monotonic()
        if now >= self._until:
            with db.tx(one_statement=True) as cur:
                row = cur.execute(queries()["any_capped_tenant"]).fetchone()
            self._any, self._until = bool(row and row["capped"]), now + self.ttl_s
        return self._any

    def forget(self) -> None:
        self._until = 0.0


class LeaseRepo:
    """Every statement a worker runs on its leases."""

    def __init__(self, db: Database, machine: Machine, *, tenant_caps: TenantCaps,
                 lock_dodge: LockDodge) -> None:
        """`tenant_caps`, `lock_dodge`: the process's, shared with derived Stores."""
        self.db, self.m = db, machine
        self.tenant_caps = tenant_caps
        self.lock_dodge = lock_dodge

    @transient
    def lease(
        self, *, worker: str, queue: str, limit: int, ttl_s: float,
        executors: list[str] | None = None, capped: list[str] | None = None,
    ) -> list[LeasedNode]:
        """Lease up to `limit` queued nodes of `queue` whose executor this worker serves.

        `capped` names served executors declared with a concurrency or rate cap; only
        then does the lease take the (slower) path that enforces caps fleet-wide.

        A lock wait that times out (a run's row held by a frozen or slow client: the
        worker's sessions wait DAGQ_WORKER_LOCK_TIMEOUT_S) makes this and the next
        leases for AROUND_LOCKED_S skip the nodes of runs whose rows are held, rather
        than wait for that one run again and again while other runs' nodes queue; a
        capped executor whose row another lease holds (one frozen mid-transaction keeps
        it) is skipped then too, its nodes left alone.
        """
        params: dict[str, Any] = {"worker": worker, "queue": queue, "ttl_s": ttl_s,
                                  "capped": None}
        dodge = self.lock_dodge
        if not dodge.active():
            try:
                return self._lease(params, limit, executors, capped, around=False)
            except psycopg.errors.LockNotAvailable as exc:
                dodge.start(queue, exc)
        return self._lease(params, limit, executors, capped, around=True)

    def _lease(
        self, params: dict[str, Any], limit: int, executors: list[str] | None,
        capped: list[str] | None, *, around: bool,
    ) -> list[LeasedNode]:
        """One lease transaction; `around`: skipping locked runs (see `lease`)."""
        q = queries()
        lease_sql = q["lease_around_locked_runs"] if around else q["lease_nodes"]
        # Capped tenants: lease_nodes leases them only under their rows' lock; the
        # fallback query leaves them alone.
        tenant_caps = not around and self.tenant_caps.any(self.db)
        with self.db.tx(one_statement=not capped and not tenant_caps) as cur:
            if tenant_caps:  # their rows stay locked until commit (race-safe caps)
                params["capped"] = [r["name"] for r in cur.execute(
                    q["lock_capped_tenants"], {"queue": params["queue"]}).fetchall()]
            if not capped:
                rows = cur.execute(lease_sql, {
                    **params, "limit": limit, "executors": executors}).fetchall()
            else:
                rows = self._lease_with_caps(cur, params, limit, executors, capped,
                                             lease_sql, around=around)
            if rows:  # node_started (and run_started) events: wake the event streams
                notify_event_streams(row["run_id"] for row in rows)
        return [LeasedNode(**row) for row in rows]

    def _lease_with_caps(
        self, cur: psycopg.Cursor[Any], params: dict[str, Any], limit: int,
        executors: list[str] | None, capped: list[str], lease_sql: str, *,
        around: bool = False,
    ) -> list[dict[str, Any]]:
        """Lease capped executors within their allowance, then the others.

        The capped executors' rows stay locked until commit, so concurrent leases by
        other workers wait here instead of overshooting a cap. A capped executor with a
        deep backlog never blocks the others: each is leased by its own statement.
        `around` (leasing around locked rows, see `lease`): a capped executor whose row
        another lease holds (one frozen mid-transaction keeps it until the server ends
        its session) is not waited for, and its nodes are left alone this time.
        """
        q = queries()
        if around:
            found = cur.execute(q["lock_free_capped_executors"], {"names": capped}).fetchall()
            held = {c["name"] for c in found if c["held"]}
            caps = [c for c in found if not c["held"]]
        else:
            held = set()
            caps = cur.execute(q["lock_capped_executors"], {"names": capped}).fetchall()
        running = {r["executor"]: r["running"] for r in cur.execute(
            q["running_by_executor"], {"names": [c["name"] for c in caps]}).fetchall()}
        rows: list[dict[str, Any]] = []
        for cap in caps:
            allowance, tokens = _allowance(cap, running.get(cap["name"], 0))
            take = min(allowance, limit - len(rows))
            if take > 0:
                leased = cur.execute(lease_sql, {
                    **params, "limit": take, "executors": [cap["name"]]}).fetchall()
                rows.extend(leased)
                if tokens is not None:
                    tokens -= len(leased)
            if tokens is not None:
                cur.execute(q["spend_tokens"], {"name": cap["name"], "tokens": tokens})
        capped_names = {c["name"] for c in caps} | held
        others = [e for e in executors or [] if e not in capped_names]
        if others and len(rows) < limit:
            rows.extend(cur.execute(lease_sql, {
                **params, "limit": limit - len(rows), "executors": others}).fetchall())
        return rows

    @transient
    def heartbeat(self, *, worker: str, node_ids: list[int], ttl_s: float) -> HeartbeatResult:
        """Extend this worker's leases; report which it lost and which must stop.

        A lease whose row is locked by another transaction right now is neither extended
        nor lost: the next heartbeat extends it (the TTL spans several heartbeats).
        """
        q = queries()
        with self.db.tx() as cur:
            cur.execute(q["worker_heartbeat"], {"id": worker})
            rows = cur.execute(
                q["heartbeat_leases"], {"worker": worker, "ids": node_ids, "ttl_s": ttl_s}
            ).fetchall() if node_ids else []
        present = {r["id"] for r in rows if not r["gone"]}
        return HeartbeatResult(
            extended=frozenset(r["id"] for r in rows if r["extended"]),
            lost=frozenset(node_ids) - present,  # taken back, finished, or deleted
            stop=frozenset(r["id"] for r in rows if r["stop"] and not r["gone"]),
        )

    def complete_and_lease(
        self, items: list[Completion], handoff: Handoff | None, *,
        wait_for_locks: bool = True,
    ) -> tuple[list[bool], list[LeasedNode]]:
        """Record many successes in one transaction (group commit), each fenced, then
        lease (per `handoff`) the nodes they released. Returns, per item, whether it
        took effect (False: its lease was lost), and the nodes leased.

        `wait_for_locks` false: a lock wait that times out raises RunsLocked at once
        instead of being retried (the caller commits the other runs apart)."""
        earlier = HandedOff()
        outcome = self._complete_and_lease(items, handoff, earlier, wait_for_locks)
        enforce_budgets(self.db, self.m, earlier.over_budget)  # once committed
        return outcome

    @transient
    def _complete_and_lease(
        self, items: list[Completion], handoff: Handoff | None, earlier: HandedOff,
        wait_for_locks: bool = True,
    ) -> tuple[list[bool], list[LeasedNode]]:
        adopted = self._adopt(earlier.rows, handoff) if earlier.rows and handoff else []
        try:
            with self.db.tx() as cur:
                earlier.over_budget = charge_usage(cur, [u for c in items for u in c.usage])[0]
                done, offered = self._complete_in(cur, items, handoff)
                earlier.rows = offered  # before COMMIT: if its answer is lost, the retry adopts
        except psycopg.errors.LockNotAvailable as exc:
            if wait_for_locks:
                raise
            raise RunsLocked(str(exc).splitlines()[0],
                             [LeasedNode(**row) for row in adopted]) from exc
        leased = [LeasedNode(**row) for row in [*adopted, *offered]]
        return [c.node_id in done for c in items], leased

    def _complete_in(
        self, cur: psycopg.Cursor[Any], items: list[Completion], handoff: Handoff | None,
    ) -> tuple[set[int], list[dict[str, Any]]]:
        """complete_and_lease's transaction: the ids recorded and the hand-off's rows."""
        q = queries()
        ordered = sorted(items, key=lambda c: c.node_id)
        rows = cur.execute(q["complete_nodes"], {"items": Jsonb([
            {"id": c.node_id, "version": c.version, "outputs": c.outputs}
            for c in ordered])}).fetchall()
        done = {row["id"] for row in rows}
        if len(done) < len(ordered):  # late or duplicate outcomes: count them
            cur.execute(q["bump_counter"], {"name": STALE_COMPLETIONS,
                                            "by": len(ordered) - len(done)})
        work = UnitOfWork()
        work.queues.update(c.wake_queue for c in ordered if c.wake_queue and c.node_id in done)
        released: list[tuple[uuid.UUID, str]] = []
        for row in sorted(rows, key=lambda r: (r["run_id"], r["id"])):
            work.event(row["run_id"], row["node_key"], "node_succeeded", row["attempts"])
            if row["parent_id"] is not None:
                work.touch(row["run_id"])
                self.m.release.finish_map_item(cur, work, row)
            else:
                work.ended(row["run_id"], "succeeded")
                released.extend((row["run_id"], key) for key in row["dependents"])
        self.m.release.release(cur, work, released, skipped=False)
        self.m.accounting.account_runs(cur, work)
        work.write_events(cur)  # before the hand-off's node_started events
        offered = self._hand_off(cur, work, handoff) if handoff else []
        work.notify()
        return done, offered

    def _adopt(self, offered: list[dict[str, Any]], handoff: Handoff) -> list[dict[str, Any]]:
        """The hand-off rows of an earlier attempt that did commit (its COMMIT's answer
        was lost): still this worker's leases, so run them rather than let them expire."""
        with self.db.tx(one_statement=True) as cur:
            held = {row["id"] for row in cur.execute(queries()["held_leases"], {
                "ids": [r["id"] for r in offered], "versions": [r["version"] for r in offered],
                "worker": handoff.worker}).fetchall()}
        return [row for row in offered if row["id"] in held]

    def _hand_off(
        self, cur: psycopg.Cursor[Any], work: UnitOfWork, handoff: Handoff
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for queue, released in sorted(work.released.items()):
            room = handoff.room.get(queue, 0)
            if room <= 0 or not released or not handoff.executors:
                continue
            offered = sorted(released)[:room]  # highest priority first
            leased = cur.execute(queries()["lease_released"], {
                "ids": [node_id for _, node_id in offered], "queue": queue,
                "executors": handoff.executors, "worker": handoff.worker,
                "ttl_s": handoff.ttl_s,
            }).fetchall()
            taken = {row["id"] for row in leased}
            work.released[queue] = [r for r in released if r[1] not in taken]
            rows.extend(leased)
        return rows

    def fail(
        self, node_id: int, version: int, error: dict[str, Any], *, retryable: bool = True,
        cancelled: bool = False, wake_queue: str | None = None, delay_s: float | None = None,
        usage: tuple[UsageRecord, ...] = (),
    ) -> str:
        """A failed (or cancelled) attempt. Returns 'retry', 'failed', 'cancelled' or
        'stale' (the fence did not match: nothing changed). `delay_s`: the retry's delay
        when the caller chose it (a plain Dramatiq actor's backoff), else the node's.
        `usage`: the attempt's usage() calls, written first (fenced like the outcome)."""
        over_budget: list[uuid.UUID] = []
        outcome = self._fail(node_id, version, error, retryable, cancelled, wake_queue,
                             delay_s, usage, over_budget)
        enforce_budgets(self.db, self.m, over_budget)  # once committed
        return outcome

    @transient
    def _fail(self, node_id: int, version: int, error: dict[str, Any], retryable: bool,
              cancelled: bool, wake_queue: str | None, delay_s: float | None,
              usage: tuple[UsageRecord, ...], over_budget: list[uuid.UUID]) -> str:
        with self.db.tx() as cur:
            over_budget[:] = charge_usage(cur, usage)[0]
            outcome = self.m.failures.fail_attempt(
                cur, node_id, version, error, retryable=retryable, cancelled=cancelled,
                delay_s=delay_s)
            if wake_queue and outcome != "stale":
                notify_after_commit(QUEUED_CHANNEL, wake_queue)
            return outcome

    def requeue_unstarted(self, *, worker: str, leases: list[tuple[int, int]]) -> int:
        """Hand prefetched, never-started leases back to the queue at once (fenced): no
        attempt spent, a `node_queued` event each. Returns how many were queued again."""
        return self._hand_back(worker, leases, started=False)

    def release_leases(self, *, worker: str, leases: list[tuple[int, int]]) -> int:
        """Hand back started attempts a stopping worker could not finish within its grace
        (fenced by (id, version)): queued again at once, no attempt charged, a
        `node_released` event each. Returns how many were queued again."""
        return self._hand_back(worker, leases, started=True)

    @transient
    def _hand_back(self, worker: str, leases: list[tuple[int, int]], *,
                   started: bool) -> int:
        if not leases:
            return 0
        with self.db.tx() as cur:
            rows = cur.execute(queries()["release_leases"], {  # also locks the runs
                "worker": worker, "ids": [i for i, _ in leases],
                "versions": [v for _, v in leases],
            }).fetchall()
            work = UnitOfWork()
            for r in sorted(rows, key=lambda r: (r["run_id"], r["id"])):
                if r["status"] == "queued" and started:  # the attempt handed back
                    work.event(r["run_id"], r["node_key"], "node_released", r["attempts"] + 1,
                               {"reason": "worker_shutdown", "worker": worker})
                elif r["status"] == "queued":
                    work.event(r["run_id"], r["node_key"], "node_queued", r["attempts"],
                               {"reason": "worker_shutdown"})
                elif r["parent_id"] is None:  # its run finished meanwhile: cancelled
                    work.ended(r["run_id"])
                    work.event(r["run_id"], r["node_key"], "node_cancelled", r["attempts"],
                               {"reason": "run finished"})
                if r["status"] == "queued":
                    work.queues.add(r["queue"])
            self.m.accounting.account_runs(cur, work)
            work.flush(cur)
        return sum(r["status"] == "queued" for r in rows)
