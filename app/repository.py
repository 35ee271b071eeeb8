"""The repository: the one module that runs dagq's SQL (named queries from sql/).

Every public method is one short transaction. Node rows are always locked before the
run row (`lock_run`), and every transaction that writes a run's events takes that run
lock first, so a run's event ids follow commit order (SSE resume relies on it). A
decision that depends on the run's status (retry, lease, requeue) reads it under that
lock. The sweeper's statements never wait for a row another transaction holds (SKIP
LOCKED, NOWAIT): a client frozen inside a transaction must not stall maintenance.
Transient database errors (lock and statement timeouts included) are retried here; a
fenced no-op is a normal result.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from tenacity import (
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_delay,
    stop_before_delay,
    wait_exponential_jitter,
)

from dagq.backoff import backoff_delay
from dagq.db import WATCHDOG, DatabaseTimeout
from dagq.errors import Conflict, DatabaseUnavailable, NotFound
from dagq.models import (
    ApiKey,
    ExecutorInfo,
    HeartbeatResult,
    LeasedNode,
    NodeView,
    RunEvent,
    RunView,
    ScheduleRecord,
    SubmitResult,
    WorkflowRecord,
)
from dagq.sqlfiles import queries
from dagq.states import OPEN_RUN_STATUSES, RETRYABLE_RUN_STATUSES
from dagq.workflow import MAX_MAP_ITEMS, WorkflowSpec, sha256_json

log = logging.getLogger("dagq.repository")

P = ParamSpec("P")
T = TypeVar("T")

QUEUED_CHANNEL = "dagq_queued"
EVENTS_CHANNEL = "dagq_events"
TRANSIENT_RETRY_S = 60.0
STALE_COMPLETIONS = "stale_completions"  # dagq.counters: outcomes the fence ignored
LEASE_EXPIRED = {
    "type": "LeaseExpired",
    "message": "the worker holding this node stopped heartbeating (crashed, killed or "
               "partitioned)",
}


# Errors worth trying again: connection loss, serialization failure, deadlock, a lock or
# statement timeout (LockNotAvailable, QueryCanceled), a session the server ended
# because its transaction sat idle too long (its client was frozen), a pool timeout.
TRANSIENT_ERRORS = (psycopg.OperationalError, psycopg.errors.IdleInTransactionSessionTimeout)

# The deadline of the outermost repository call running in this thread (API requests).
_call = threading.local()


def transient(fn: Callable[P, T]) -> Callable[P, T]:
    """Retry transient errors for the owner's `retry_s`, then give up cleanly; with a
    `call_timeout_s`, the whole call (every attempt, checkout and wait) ends by then."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        owner = args[0] if args else None
        retry_s = getattr(owner, "retry_s", TRANSIENT_RETRY_S)
        budget = getattr(owner, "call_timeout_s", None)
        outermost = budget is not None and getattr(_call, "deadline", None) is None
        retrying = Retrying(
            retry=retry_if_exception_type(TRANSIENT_ERRORS)
            & retry_if_not_exception_type(DatabaseTimeout),  # its time is up
            wait=wait_exponential_jitter(multiplier=0.05, max=2.0),
            # Bounded calls never start a sleep they could not finish in time.
            stop=stop_before_delay(retry_s) if budget else stop_after_delay(retry_s),
            reraise=True,
        )
        if outermost:
            _call.deadline = time.monotonic() + budget
        try:
            for attempt in retrying:
                with attempt:
                    return fn(*args, **kwargs)
        except DatabaseTimeout as exc:
            raise DatabaseUnavailable(str(exc)) from exc
        except TRANSIENT_ERRORS as exc:
            raise DatabaseUnavailable(f"database unavailable: {exc}") from exc
        finally:
            if outermost:
                _call.deadline = None
        raise AssertionError("unreachable")  # pragma: no cover

    return wrapper


@dataclass
class _Effects:
    """Events and notifications a transaction emits, written once at its end."""

    events: list[tuple[uuid.UUID, str | None, str, int | None, dict[str, Any]]] = field(
        default_factory=list
    )
    queues: set[str] = field(default_factory=set)  # wake these queues' consumers
    # Nodes released (queued) by this transaction, by queue, as (-priority, id): a
    # hand-off may lease them; the queues of those left over are woken.
    released: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def event(
        self, run_id: uuid.UUID, node_key: str | None, type_: str, attempt: int | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.events.append((run_id, node_key, type_, attempt, data or {}))

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
        _notify_event_streams(event[0] for event in self.events)
        self.events.clear()

    def notify(self) -> None:
        wake = self.queues | {queue for queue, ids in self.released.items() if ids}
        for queue in sorted(wake):
            _notify_after_commit(QUEUED_CHANNEL, queue)


# Notifications wait for their transaction to commit, then go out in a transaction of
# their own. A NOTIFY inside a durable transaction holds a database-wide lock until that
# transaction's WAL is flushed, which serialises every commit (no group commit); a
# transaction that only notifies writes no WAL and holds that lock for microseconds.
# A notification lost to a crash in between costs latency only: consumers poll.
_outbox = threading.local()


def _notify_event_streams(run_ids: Iterable[uuid.UUID]) -> None:
    """Wake the event streams of these runs (all streams when there are many)."""
    runs = sorted({str(run_id) for run_id in run_ids})
    _notify_after_commit(EVENTS_CHANNEL, ",".join(runs) if len(runs) <= 100 else "*")


def _notify_after_commit(channel: str, payload: str) -> None:
    notes = getattr(_outbox, "notes", None)
    if notes is None:
        raise RuntimeError("notifications are only sent from inside a transaction")
    notes.append((channel, payload))


@dataclass
class _Tally:
    """Top-level nodes of one run that became terminal in this transaction."""

    done: int = 0
    succeeded: int = 0
    failed: int = 0
    fail_run: bool = False
    error: dict[str, Any] | None = None


class _Tallies(dict[uuid.UUID, _Tally]):
    """Per-run tallies of one transaction; a run appears as soon as it is touched."""

    def __missing__(self, run_id: uuid.UUID) -> _Tally:
        tally = self[run_id] = _Tally()
        return tally


@dataclass(frozen=True)
class Handoff:
    """Lease what a completion releases for the completing worker, in the same
    transaction: `room` free prefetch slots per queue, for the (uncapped) `executors`
    it serves."""

    worker: str
    ttl_s: float
    executors: list[str]
    room: dict[str, int]


@dataclass(frozen=True)
class Completion:
    """One successful attempt to record: the fence (id, version) and its outputs."""

    node_id: int
    version: int
    outputs: Any
    wake_queue: str | None = None


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


def final_run_status(failed: int, succeeded: int, fail_fast: bool) -> str:
    """The status of a run none of whose nodes is left to run."""
    if failed == 0:
        return "succeeded"
    if fail_fast or succeeded == 0:
        return "failed"
    return "partial_succeeded"


def _error_data(error: dict[str, Any] | None) -> dict[str, Any]:
    return {"error": error} if error else {}


class Repository:
    """Owns the pool and every statement. Thread-safe: each call borrows a connection."""

    def __init__(
        self, pool: ConnectionPool, *, retry_s: float = TRANSIENT_RETRY_S,
        call_timeout_s: float | None = None,
    ) -> None:
        """`retry_s`: how long transient database errors are retried before
        DatabaseUnavailable (workers ride out a Postgres restart; the API answers 503
        sooner). `call_timeout_s`: every call ends within this, retries included, even
        when the server hangs (the API's bound on a request's database calls)."""
        self.pool = pool
        self.retry_s = retry_s
        self.call_timeout_s = call_timeout_s
        self.wait_s: float | None = None  # for a pooled connection; None: the pool's timeout
        self._executors_cache: tuple[float, dict[str, ExecutorInfo] | None] = (0.0, None)
        self._queues_cache: tuple[float, frozenset[str] | None] = (0.0, None)

    def bounded(self, seconds: float) -> Repository:
        """This repository (same pool), for calls that must give up after about `seconds`
        (a worker shutting down must be gone before it is killed): transient errors are
        retried for half of it, and each try waits at most half of it for a connection."""
        bounded = copy.copy(self)
        bounded.retry_s = bounded.wait_s = seconds / 2
        return bounded

    def close(self) -> None:
        self.pool.close()

    @contextlib.contextmanager
    def _tx(self, *, one_statement: bool = False) -> Iterator[psycopg.Cursor[Any]]:
        """A transaction on a pooled (autocommit) connection; its notifications go out in
        one statement once it committed.

        `one_statement`: the body runs a single statement, which is a transaction of its
        own in autocommit, so no BEGIN and COMMIT round trips are spent on it.
        """
        deadline = getattr(_call, "deadline", None)
        with self._connection(deadline) as conn:
            notes: list[tuple[str, str]] = []
            outer, _outbox.notes = getattr(_outbox, "notes", None), notes
            try:
                tx = contextlib.nullcontext() if one_statement else conn.transaction()
                with tx, conn.cursor() as cur:
                    yield cur
            finally:
                _outbox.notes = outer
            if notes:  # committed: now tell the listeners
                self._notify(conn, list(dict.fromkeys(notes)))

    @contextlib.contextmanager
    def _connection(self, deadline: float | None) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; with a deadline (monotonic), the checkout waits only
        until then and the connection is cut off if still in use then."""
        if deadline is None:
            with self.pool.connection(timeout=self.wait_s) as conn:
                yield conn
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise DatabaseTimeout("the database did not answer in time")
        with self.pool.connection(timeout=left) as conn, \
                WATCHDOG.bound(conn, deadline - time.monotonic()) as fired:
            try:
                yield conn
            except psycopg.Error as exc:
                if fired:
                    raise DatabaseTimeout(
                        f"the database did not answer within {self.call_timeout_s}s") from exc
                raise

    @staticmethod
    def _notify(conn: psycopg.Connection[Any], notes: list[tuple[str, str]]) -> None:
        """Best effort, and never a reason to retry the committed transaction: a lost
        notification costs latency only (consumers poll, event streams re-read)."""
        try:
            conn.execute(queries()["notify"], {"channels": [c for c, _ in notes],
                                               "payloads": [p for _, p in notes]})
        except psycopg.Error as exc:
            log.info("notification lost after commit (%s); listeners will poll", exc)

    # ===== health =====================================================================

    @transient
    def ping(self) -> bool:
        with self._tx() as cur:
            return cur.execute(queries()["ping"]).fetchone() is not None

    # ===== workflows ==================================================================

    @transient
    def register_workflow(self, spec: WorkflowSpec) -> tuple[WorkflowRecord, bool]:
        """Store the spec as the next version of its name, unless identical to one stored."""
        q = queries()
        canonical, spec_hash = spec.canonical(), spec.spec_hash()
        for _ in range(20):  # racing registrations of new versions retry on the PK
            with self._tx() as cur:
                same = cur.execute(
                    q["workflow_by_hash"], {"name": spec.name, "spec_hash": spec_hash}
                ).fetchone()
                if same:
                    return WorkflowRecord(name=same["name"], version=same["version"],
                                          spec=canonical), False
                row = cur.execute(q["insert_workflow_version"], {
                    "name": spec.name, "spec": Jsonb(canonical), "spec_hash": spec_hash,
                }).fetchone()
                if row:
                    return WorkflowRecord(name=row["name"], version=row["version"],
                                          spec=canonical), True
        raise Conflict(f"workflow {spec.name!r} is being registered concurrently; try again")

    @transient
    def get_workflow(self, name: str, version: int | None = None) -> WorkflowRecord:
        q = queries()
        with self._tx() as cur:
            if version is None:
                row = cur.execute(q["get_workflow_latest"], {"name": name}).fetchone()
            else:
                row = cur.execute(
                    q["get_workflow_version"], {"name": name, "version": version}
                ).fetchone()
        if row is None:
            suffix = f" version {version}" if version is not None else ""
            raise NotFound(f"workflow {name!r}{suffix} not found")
        return WorkflowRecord(**row)

    @transient
    def list_workflows(self) -> list[WorkflowRecord]:
        with self._tx() as cur:
            return [WorkflowRecord(**row) for row in cur.execute(queries()["list_workflows"])]

    # ===== submit =====================================================================

    def submit_run(
        self, *, tenant: str, spec: WorkflowSpec, workflow_version: int | None = None,
        inputs: Any = None, event_key: str | None = None, priority: int = 0,
        deadline_s: float | None = None, fingerprint_spec: WorkflowSpec | None = None,
    ) -> SubmitResult:
        """Create a run with all its nodes, roots queued; idempotent by event key.

        The idempotency fingerprint covers the workflow as submitted (`fingerprint_spec`,
        before executor defaults were filled in) and the inputs.
        """
        inputs = {} if inputs is None else inputs
        as_submitted = fingerprint_spec or spec
        fingerprint = sha256_json(
            {"workflow": as_submitted.name, "spec": as_submitted.spec_hash(), "inputs": inputs}
        )
        run_id = uuid.uuid4()  # chosen once, so a retried insert finds its own row
        return self._submit(run_id, tenant, spec, workflow_version, inputs, event_key,
                            priority, deadline_s, fingerprint)

    @transient
    def _submit(
        self, run_id: uuid.UUID, tenant: str, spec: WorkflowSpec, workflow_version: int | None,
        inputs: Any, event_key: str | None, priority: int, deadline_s: float | None,
        fingerprint: str,
    ) -> SubmitResult:
        nodes = _node_rows(spec, priority)
        roots = [node for node in nodes if node["status"] == "queued"]
        events = [{"type": "run_queued",
                   "data": {"workflow": spec.name, "version": workflow_version}},
                  *({"node_key": node["node_key"], "type": "node_queued", "attempt": 0}
                    for node in roots)]
        with self._tx(one_statement=True) as cur:
            row = cur.execute(queries()["submit_run"], {
                "id": run_id, "tenant": tenant, "workflow": spec.name,
                "workflow_version": workflow_version, "spec": Jsonb(spec.canonical()),
                "fingerprint": fingerprint, "event_key": event_key, "priority": priority,
                "fail_fast": spec.fail_fast, "inputs": Jsonb(inputs),
                "nodes_total": len(spec.nodes), "deadline_s": deadline_s,
                "nodes": Jsonb(nodes), "events": Jsonb(events),
            }).fetchone()
            if row is None:
                return self._existing_run(cur, run_id, tenant, event_key, fingerprint)
            _notify_event_streams([run_id])
            for queue in sorted({node["queue"] for node in roots}):
                _notify_after_commit(QUEUED_CHANNEL, queue)
        return SubmitResult(run_id=run_id, status="queued", created=True)

    def _existing_run(
        self, cur: psycopg.Cursor[Any], run_id: uuid.UUID, tenant: str, event_key: str | None,
        fingerprint: str,
    ) -> SubmitResult:
        q = queries()
        if event_key is not None:
            row = cur.execute(q["run_by_event_key"],
                              {"tenant": tenant, "event_key": event_key}).fetchone()
        else:
            row = cur.execute(q["run_by_id_for_submit"], {"id": run_id}).fetchone()
        if row is None:
            raise Conflict("the run for this event key was removed while submitting; retry")
        if row["fingerprint"] != fingerprint:
            raise Conflict(
                f"event key {event_key!r} was already used for a different workflow or inputs",
                {"run_id": str(row["id"])},
            )
        return SubmitResult(run_id=row["id"], status=row["status"], created=False)

    # ===== lease and heartbeat ========================================================

    @transient
    def lease(
        self, *, worker: str, queue: str, limit: int, ttl_s: float,
        executors: list[str] | None = None, capped: list[str] | None = None,
    ) -> list[LeasedNode]:
        """Lease up to `limit` queued nodes of `queue` whose executor this worker serves.

        `capped` names served executors declared with a concurrency or rate cap; only
        then does the lease take the (slower) path that enforces caps fleet-wide.
        """
        params = {"worker": worker, "queue": queue, "ttl_s": ttl_s}
        with self._tx(one_statement=not capped) as cur:
            if not capped:
                rows = cur.execute(queries()["lease_nodes"], {
                    **params, "limit": limit, "executors": executors}).fetchall()
            else:
                rows = self._lease_with_caps(cur, params, limit, executors, capped)
            if rows:  # node_started (and run_started) events: wake the event streams
                _notify_event_streams(row["run_id"] for row in rows)
        return [LeasedNode(**row) for row in rows]

    def _lease_with_caps(
        self, cur: psycopg.Cursor[Any], params: dict[str, Any], limit: int,
        executors: list[str] | None, capped: list[str],
    ) -> list[dict[str, Any]]:
        """Lease capped executors within their allowance, then the others.

        The capped executors' rows stay locked until commit, so concurrent leases by
        other workers wait here instead of overshooting a cap. A capped executor with a
        deep backlog never blocks the others: each is leased by its own statement.
        """
        q = queries()
        caps = cur.execute(q["lock_capped_executors"], {"names": capped}).fetchall()
        running = {r["executor"]: r["running"] for r in cur.execute(
            q["running_by_executor"], {"names": [c["name"] for c in caps]}).fetchall()}
        rows: list[dict[str, Any]] = []
        for cap in caps:
            allowance, tokens = _allowance(cap, running.get(cap["name"], 0))
            take = min(allowance, limit - len(rows))
            if take > 0:
                leased = cur.execute(q["lease_nodes"], {
                    **params, "limit": take, "executors": [cap["name"]]}).fetchall()
                rows.extend(leased)
                if tokens is not None:
                    tokens -= len(leased)
            if tokens is not None:
                cur.execute(q["spend_tokens"], {"name": cap["name"], "tokens": tokens})
        capped_names = {c["name"] for c in caps}
        others = [e for e in executors or [] if e not in capped_names]
        if others and len(rows) < limit:
            rows.extend(cur.execute(q["lease_nodes"], {
                **params, "limit": limit - len(rows), "executors": others}).fetchall())
        return rows

    @transient
    def heartbeat(self, *, worker: str, node_ids: list[int], ttl_s: float) -> HeartbeatResult:
        """Extend this worker's leases; report which it lost and which must stop.

        A lease whose row is locked by another transaction right now is neither extended
        nor lost: the next heartbeat extends it (the TTL spans several heartbeats).
        """
        q = queries()
        with self._tx() as cur:
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

    # ===== node transitions ===========================================================

    def complete(
        self, node_id: int, version: int, outputs: Any, *, wake_queue: str | None = None
    ) -> bool:
        """Record success (fenced). False when the lease was lost: nothing changed.

        `wake_queue`: NOTIFY that queue's consumers even if nothing new was queued (a
        capped executor's slot just freed up).
        """
        return self.complete_many([Completion(node_id, version, outputs, wake_queue)])[0]

    def complete_many(self, items: list[Completion]) -> list[bool]:
        """Record many successes in one transaction (group commit), each fenced.

        Returns, per item, whether it took effect (False: its lease was lost).
        """
        return self.complete_and_lease(items, None)[0]

    def complete_and_lease(
        self, items: list[Completion], handoff: Handoff | None
    ) -> tuple[list[bool], list[LeasedNode]]:
        """`complete_many`, then lease (per `handoff`) the nodes it released."""
        offered: list[dict[str, Any]] = []  # leased by an attempt whose COMMIT may be lost
        return self._complete_and_lease(items, handoff, offered)

    @transient
    def _complete_and_lease(
        self, items: list[Completion], handoff: Handoff | None, offered: list[dict[str, Any]]
    ) -> tuple[list[bool], list[LeasedNode]]:
        q = queries()
        adopted = self._adopt(offered, handoff) if offered and handoff else []
        ordered = sorted(items, key=lambda c: c.node_id)
        with self._tx() as cur:
            rows = cur.execute(q["complete_nodes"], {"items": Jsonb([
                {"id": c.node_id, "version": c.version, "outputs": c.outputs}
                for c in ordered])}).fetchall()
            done = {row["id"] for row in rows}
            if len(done) < len(ordered):  # late or duplicate outcomes: count them
                cur.execute(q["bump_counter"], {"name": STALE_COMPLETIONS,
                                                "by": len(ordered) - len(done)})
            fx, tallies = _Effects(), _Tallies()
            fx.queues.update(c.wake_queue for c in ordered if c.wake_queue and c.node_id in done)
            released: list[tuple[uuid.UUID, str]] = []
            for row in sorted(rows, key=lambda r: (r["run_id"], r["id"])):
                tally = tallies[row["run_id"]]
                fx.event(row["run_id"], row["node_key"], "node_succeeded", row["attempts"])
                if row["parent_id"] is not None:
                    self._finish_map_item(cur, fx, tallies, row)
                else:
                    tally.done += 1
                    tally.succeeded += 1
                    released.extend((row["run_id"], key) for key in row["dependents"])
            self._release(cur, fx, tallies, released, skipped=False)
            self._account_runs(cur, fx, tallies)
            fx.write_events(cur)  # before the hand-off's node_started events
            offered[:] = self._hand_off(cur, fx, handoff) if handoff else []
            fx.notify()
        leased = [LeasedNode(**row) for row in [*adopted, *offered]]
        return [c.node_id in done for c in items], leased

    def _adopt(self, offered: list[dict[str, Any]], handoff: Handoff) -> list[dict[str, Any]]:
        """The hand-off rows of an earlier attempt that did commit (its COMMIT's answer
        was lost): still this worker's leases, so run them rather than let them expire."""
        with self._tx(one_statement=True) as cur:
            held = {row["id"] for row in cur.execute(queries()["held_leases"], {
                "ids": [r["id"] for r in offered], "versions": [r["version"] for r in offered],
                "worker": handoff.worker}).fetchall()}
        return [row for row in offered if row["id"] in held]

    def _hand_off(
        self, cur: psycopg.Cursor[Any], fx: _Effects, handoff: Handoff
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for queue, released in sorted(fx.released.items()):
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
            fx.released[queue] = [r for r in released if r[1] not in taken]
            rows.extend(leased)
        return rows

    @transient
    def fail(
        self, node_id: int, version: int, error: dict[str, Any], *, retryable: bool = True,
        cancelled: bool = False, wake_queue: str | None = None,
    ) -> str:
        """A failed (or cancelled) attempt. Returns 'retry', 'failed', 'cancelled' or
        'stale' (the fence did not match: nothing changed)."""
        with self._tx() as cur:
            outcome = self._fail_in(cur, node_id, version, error, retryable=retryable,
                                    cancelled=cancelled)
            if wake_queue and outcome != "stale":
                _notify_after_commit(QUEUED_CHANNEL, wake_queue)
            return outcome

    def _fail_in(
        self, cur: psycopg.Cursor[Any], node_id: int, version: int | None,
        error: dict[str, Any], *, retryable: bool = True, lease_expired: bool = False,
        cancelled: bool = False,
    ) -> str:
        """Record a failed attempt. A run found finished ends the node: `cancelled` where
        it would have been retried (or was told to stop), `failed` if it failed for good.

        The run status read here is not under the run lock (node rows are locked before
        run rows): a finished run stays finished while one of its nodes runs, but one
        seen open may finish meanwhile, so retry_node reads it again under the lock.
        """
        node = cur.execute(queries()["node_for_failure"], {"id": node_id}).fetchone()
        stale = node is None or node["status"] != "running" or (
            version is not None and node["version"] != version)
        if stale:
            if version is not None:  # a worker's late outcome (not a sweeper's race)
                cur.execute(queries()["bump_counter"], {"name": STALE_COMPLETIONS, "by": 1})
            return "stale"
        fx = _Effects()
        # The sweeper never waits for a run another transaction holds. It takes the run
        # right after the node row it holds, before the rest of the run's nodes (a fail
        # fast cancels them), as the reclaim always did.
        if lease_expired:
            run = cur.execute(queries()["try_lock_run"], {"run_id": node["run_id"]}).fetchone()
            if run is None:
                return "busy"
            node = {**node, "run_status": run["status"]}
            fx.event(node["run_id"], node["node_key"], "node_lease_expired", node["attempts"],
                     _error_data(error))
        would_retry = retryable and node["attempts"] < node["max_attempts"]
        if cancelled or node["run_status"] not in OPEN_RUN_STATUSES:
            status = "cancelled" if cancelled or would_retry else "failed"
            return self._stop_node(cur, fx, node, error, status)
        if would_retry:
            return self._retry(cur, fx, node, error)
        return self._fail_for_good(cur, fx, node, error)

    def _retry(
        self, cur: psycopg.Cursor[Any], fx: _Effects, node: dict[str, Any],
        error: dict[str, Any],
    ) -> str:
        delay = backoff_delay(node["attempts"], node["backoff_initial_s"], node["backoff_max_s"])
        row = cur.execute(queries()["retry_node"], {  # also takes the run lock
            "id": node["id"], "version": node["version"], "error": Jsonb(error),
            "delay_s": delay,
        }).fetchone()
        if row is None:
            return "stale"
        if row["status"] == "cancelled":  # the run finished before this failure committed
            return self._ended(cur, fx, row, "cancelled", {
                **_error_data(error), "reason": f"run {row['run_status']}"})
        fx.event(node["run_id"], node["node_key"], "node_retry", node["attempts"], {
            **_error_data(error), "delay_s": round(delay, 3),
            "available_at": row["available_at"].isoformat(),
        })
        fx.queues.add(node["queue"])
        fx.flush(cur)
        return "retry"

    def _fail_for_good(
        self, cur: psycopg.Cursor[Any], fx: _Effects, node: dict[str, Any],
        error: dict[str, Any],
    ) -> str:
        row = cur.execute(queries()["fail_node"], {
            "id": node["id"], "version": node["version"], "status": "failed",
            "error": Jsonb(error),
        }).fetchone()
        if row is None:
            return "stale"
        tally = _Tally()
        fx.event(row["run_id"], row["node_key"], "node_failed", row["attempts"],
                 _error_data(error))
        if row["parent_id"] is not None:
            self._fail_map_parent(cur, fx, tally, row, error, node["fail_fast"])
        else:
            self._node_failed(cur, fx, tally, row, error, node["fail_fast"])
        self._account(cur, fx, tally, row["run_id"])
        fx.flush(cur)
        return "failed"

    def _stop_node(
        self, cur: psycopg.Cursor[Any], fx: _Effects, node: dict[str, Any],
        error: dict[str, Any], status: str,
    ) -> str:
        """A running node that was told to stop, or of a finished run, ends without retry
        (`status`: cancelled or failed)."""
        row = cur.execute(queries()["fail_node"], {
            "id": node["id"], "version": node["version"], "status": status,
            "error": Jsonb(error),
        }).fetchone()
        if row is None:
            return "stale"
        return self._ended(cur, fx, row, status, _error_data(error))

    def _ended(
        self, cur: psycopg.Cursor[Any], fx: _Effects, row: dict[str, Any], status: str,
        data: dict[str, Any],
    ) -> str:
        """Count a node that just ended without touching the rest of its run."""
        tally = _Tally()
        fx.event(row["run_id"], row["node_key"], f"node_{status}", row["attempts"], data)
        if row["parent_id"] is None:
            tally.done += 1
            tally.failed += status == "failed"
        self._account(cur, fx, tally, row["run_id"])
        fx.flush(cur)
        return status

    def _node_failed(
        self, cur: psycopg.Cursor[Any], fx: _Effects, tally: _Tally, row: dict[str, Any],
        error: dict[str, Any], fail_fast: bool,
    ) -> None:
        """A top-level node failed for good: cancel the run's rest, or skip downstream."""
        q = queries()
        run_id = row["run_id"]
        tally.done += 1
        tally.failed += 1
        tally.error = {"node": row["node_key"], **error}
        if fail_fast:
            tally.fail_run = True
            for other in cur.execute(q["cancel_waiting_nodes"], {"run_id": run_id}).fetchall():
                if other["parent_id"] is None:
                    tally.done += 1
                    fx.event(run_id, other["node_key"], "node_cancelled", None,
                             {"reason": f"node {row['node_key']!r} failed"})
            return
        skipped = cur.execute(q["skip_descendants"], {
            "run_id": run_id, "dependents": row["dependents"],
        }).fetchall()
        for other in skipped:
            tally.done += 1
            fx.event(run_id, other["node_key"], "node_skipped", None,
                     {"reason": f"upstream node {row['node_key']!r} failed"})

    def _release(
        self, cur: psycopg.Cursor[Any], fx: _Effects, tallies: _Tallies,
        pairs: list[tuple[uuid.UUID, str]], *, skipped: bool,
    ) -> None:
        """Count terminal dependencies on their dependents (`pairs`: one (run, dependent)
        per finished dependency); queue, skip or expand those now ready, and carry
        skips downstream."""
        q = queries()
        frontier: list[tuple[list[tuple[uuid.UUID, str]], bool]] = [(pairs, skipped)]
        while frontier:
            pairs, was_skipped = frontier.pop()
            if not pairs:
                continue
            rows = cur.execute(q["release_dependents"], {
                "run_ids": [run_id for run_id, _ in pairs], "keys": [k for _, k in pairs],
                "skipped": int(was_skipped),
            }).fetchall()
            skips: list[tuple[uuid.UUID, str]] = []
            for row in rows:
                run_id = row["run_id"]
                if row["status"] == "queued":
                    fx.event(run_id, row["node_key"], "node_queued", 0)
                    fx.released.setdefault(row["queue"], []).append(
                        (-row["priority"], row["id"]))
                elif row["status"] == "skipped":
                    tallies[run_id].done += 1
                    fx.event(run_id, row["node_key"], "node_skipped")
                    skips.extend((run_id, key) for key in row["dependents"])
                elif row["status"] == "running":
                    self._expand_map(cur, fx, tallies, run_id, row["id"], frontier)
            frontier.append((skips, True))

    # ===== map nodes ==================================================================

    def _expand_map(
        self, cur: psycopg.Cursor[Any], fx: _Effects, tallies: _Tallies, run_id: uuid.UUID,
        node_id: int, frontier: list[tuple[list[tuple[uuid.UUID, str]], bool]],
    ) -> None:
        q = queries()
        src = cur.execute(q["map_source"], {"id": node_id}).fetchone()
        items = src["items"]
        problem = None
        if not isinstance(items, list):
            problem = f"map path did not resolve to a list (got {type(items).__name__})"
        elif len(items) > MAX_MAP_ITEMS:
            problem = f"map over {len(items)} items exceeds the limit of {MAX_MAP_ITEMS}"
        if problem is not None:
            error = {"type": "MapError", "message": problem}
            row = cur.execute(q["fail_map_parent"], {
                "parent_id": node_id, "error": Jsonb(error), "attempts": 0,
            }).fetchone()
            fx.event(run_id, src["node_key"], "node_failed", 0, _error_data(error))
            fail_fast = self._fail_fast(cur, run_id)
            self._node_failed(cur, fx, tallies[run_id], row, error, fail_fast)
            return
        if not items:
            row = cur.execute(q["succeed_empty_map"], {"id": node_id}).fetchone()
            tallies[run_id].done += 1
            tallies[run_id].succeeded += 1
            fx.event(run_id, src["node_key"], "node_succeeded", 0, {"items": 0})
            frontier.append(([(run_id, key) for key in row["dependents"]], False))
            return
        cur.execute(q["insert_map_items"], {
            "run_id": run_id, "node_key": src["node_key"], "executor": src["executor"],
            "queue": src["queue"], "priority": src["priority"],
            "max_attempts": src["max_attempts"], "timeout_s": src["timeout_s"],
            "backoff_initial_s": src["backoff_initial_s"],
            "backoff_max_s": src["backoff_max_s"], "params": Jsonb(src["params"]),
            "depends_on": src["depends_on"], "parent_id": node_id, "items": Jsonb(items),
        })
        cur.execute(q["set_map_remaining"], {"id": node_id, "count": len(items)})
        fx.event(run_id, src["node_key"], "node_queued", 0, {"items": len(items)})
        fx.queues.add(src["queue"])

    def _finish_map_item(
        self, cur: psycopg.Cursor[Any], fx: _Effects, tallies: _Tallies, row: dict[str, Any]
    ) -> None:
        parent = cur.execute(queries()["finish_map_item"], {
            "parent_id": row["parent_id"], "attempts": row["attempts"],
        }).fetchone()
        if parent is None or parent["status"] != "succeeded":
            return
        run_id = parent["run_id"]
        tallies[run_id].done += 1
        tallies[run_id].succeeded += 1
        fx.event(run_id, parent["node_key"], "node_succeeded", parent["attempts"])
        self._release(cur, fx, tallies, [(run_id, key) for key in parent["dependents"]],
                      skipped=False)

    def _fail_map_parent(
        self, cur: psycopg.Cursor[Any], fx: _Effects, tally: _Tally, item: dict[str, Any],
        error: dict[str, Any], fail_fast: bool,
    ) -> None:
        """An item failed for good, so its map node fails and its other items stop."""
        q = queries()
        item_error = {**error, "item": item["node_key"]}
        parent = cur.execute(q["fail_map_parent"], {
            "parent_id": item["parent_id"], "error": Jsonb(item_error),
            "attempts": item["attempts"],
        }).fetchone()
        if parent is None:
            return
        cur.execute(q["cancel_map_items"], {"parent_id": parent["id"]})
        fx.event(parent["run_id"], parent["node_key"], "node_failed", parent["attempts"],
                 _error_data(item_error))
        self._node_failed(cur, fx, tally, parent, item_error, fail_fast)

    # ===== run bookkeeping ============================================================

    def _fail_fast(self, cur: psycopg.Cursor[Any], run_id: uuid.UUID) -> bool:
        row = cur.execute(queries()["get_run"], {"run_id": run_id}).fetchone()
        return bool(row and row["fail_fast"])

    def _account(
        self, cur: psycopg.Cursor[Any], fx: _Effects, tally: _Tally, run_id: uuid.UUID
    ) -> None:
        tallies = _Tallies()
        tallies[run_id] = tally
        self._account_runs(cur, fx, tallies)

    def _account_runs(self, cur: psycopg.Cursor[Any], fx: _Effects, tallies: _Tallies) -> None:
        """Lock the runs (id order), count what finished, finish those with nothing left.

        Also the run lock that orders every run's events: called for every run this
        transaction wrote events for, before the events are inserted.
        """
        if not tallies:
            return
        rows = cur.execute(queries()["account_runs"], {"runs": Jsonb([
            {"run_id": str(run_id), "done": t.done, "succeeded": t.succeeded,
             "failed": t.failed, "fail_run": t.fail_run, "error": t.error or None}
            for run_id, t in sorted(tallies.items())])}).fetchall()
        for row in rows:
            if row["old_status"] in OPEN_RUN_STATUSES and row["status"] not in OPEN_RUN_STATUSES:
                fx.event(row["id"], None, f"run_{row['status']}", None,
                         _error_data(row["error"]))

    # ===== shutdown ===================================================================

    @transient
    def requeue_unstarted(self, *, worker: str, leases: list[tuple[int, int]]) -> int:
        """Hand prefetched, never-started leases back to the queue at once (fenced)."""
        if not leases:
            return 0
        with self._tx() as cur:
            rows = cur.execute(queries()["requeue_unstarted"], {  # also locks the runs
                "worker": worker, "ids": [i for i, _ in leases],
                "versions": [v for _, v in leases],
            }).fetchall()
            fx, tallies = _Effects(), _Tallies()
            for r in sorted(rows, key=lambda r: (r["run_id"], r["id"])):
                if r["status"] == "queued":
                    fx.event(r["run_id"], r["node_key"], "node_queued", r["attempts"],
                             {"reason": "worker_shutdown"})
                    fx.queues.add(r["queue"])
                elif r["parent_id"] is None:  # its run finished meanwhile: cancelled
                    tallies[r["run_id"]].done += 1
                    fx.event(r["run_id"], r["node_key"], "node_cancelled", r["attempts"],
                             {"reason": "run finished"})
            self._account_runs(cur, fx, tallies)
            fx.flush(cur)
        return sum(r["status"] == "queued" for r in rows)

    # ===== cancel and retry ===========================================================

    @transient
    def cancel_run(self, run_id: uuid.UUID, tenant: str | None) -> str:
        """Cancel what has not started; running nodes stop at their next heartbeat."""
        q = queries()
        with self._tx() as cur:
            run = self._visible_run(cur, run_id, tenant)
            if run["status"] not in OPEN_RUN_STATUSES:
                if run["status"] == "cancelled":
                    return "cancelled"
                raise Conflict(f"run {run_id} already finished ({run['status']})")
            nodes = cur.execute(q["cancel_waiting_nodes"], {"run_id": run_id}).fetchall()
            top = [n for n in nodes if n["parent_id"] is None]
            cur.execute(q["lock_run"], {"run_id": run_id})
            if cur.execute(q["cancel_run"], {"run_id": run_id, "cancelled": len(top)}).fetchone():
                fx = _Effects()
                for node in top:
                    fx.event(run_id, node["node_key"], "node_cancelled", None,
                             {"reason": "run cancelled"})
                fx.event(run_id, None, "run_cancelled")
                fx.flush(cur)
        return "cancelled"

    @transient
    def retry_run(self, run_id: uuid.UUID, tenant: str | None) -> str:
        """Requeue a finished run's failed, cancelled and skipped nodes (attempts reset)."""
        q = queries()
        with self._tx() as cur:
            run = self._visible_run(cur, run_id, tenant)
            if run["status"] not in RETRYABLE_RUN_STATUSES:
                raise Conflict(
                    f"only failed, partial_succeeded or cancelled runs can be retried; "
                    f"run {run_id} is {run['status']}"
                )
            if cur.execute(q["count_run_nodes"], {"run_id": run_id}).fetchone()["remaining"]:
                raise Conflict(f"run {run_id} still has running nodes; retry when they stop")
            nodes = cur.execute(q["nodes_to_retry"], {"run_id": run_id}).fetchall()
            cur.execute(q["delete_map_items"], {
                "run_id": run_id, "parent_ids": [n["id"] for n in nodes],
            })
            # Roots queue at once. A node whose dependencies all succeeded is held by one
            # pretend dependency and released below like any other node, so its `if` is
            # checked again and a map node expands again.
            ready = [n["node_key"] for n in nodes
                     if n["depends_on"] and n["deps_not_succeeded"] == 0]
            reset = cur.execute(q["reset_nodes_for_retry"], {
                "ids": [n["id"] for n in nodes],
                "statuses": ["queued" if not n["depends_on"] else "pending" for n in nodes],
                "deps_remaining": [max(n["deps_not_succeeded"], 1) if n["depends_on"] else 0
                                   for n in nodes],
            }).fetchall()
            fx, tallies = _Effects(), _Tallies()
            fx.event(run_id, None, "run_queued", None, {"retry": True})
            for node in reset:
                if node["status"] == "queued":
                    fx.event(run_id, node["node_key"], "node_queued", 0, {"retry": True})
                    fx.queues.add(node["queue"])
            self._release(cur, fx, tallies, [(run_id, key) for key in ready], skipped=False)
            cur.execute(q["lock_run"], {"run_id": run_id})
            cur.execute(q["reopen_run"], {"run_id": run_id, "reset": len(reset)})
            self._account_runs(cur, fx, tallies)
            fx.flush(cur)
        return "running"

    def _visible_run(
        self, cur: psycopg.Cursor[Any], run_id: uuid.UUID, tenant: str | None
    ) -> dict[str, Any]:
        row = cur.execute(queries()["get_run"], {"run_id": run_id}).fetchone()
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise NotFound(f"run {run_id} not found")
        return row

    # ===== reads ======================================================================

    @transient
    def get_run(
        self, run_id: uuid.UUID, tenant: str | None = None, *, with_nodes: bool = True
    ) -> RunView:
        q = queries()
        with self._tx() as cur:
            row = self._visible_run(cur, run_id, tenant)
            nodes = cur.execute(q["run_nodes"], {"run_id": run_id}).fetchall() \
                if with_nodes else None
        return _run_view(row, nodes)

    @transient
    def list_runs(
        self, *, tenant: str | None, status: str | None = None, workflow: str | None = None,
        limit: int = 50, cursor: tuple[datetime, uuid.UUID] | None = None,
    ) -> list[RunView]:
        with self._tx() as cur:
            rows = cur.execute(queries()["list_runs"], {
                "tenant": tenant, "status": status, "workflow": workflow, "limit": limit,
                "cursor_at": cursor[0] if cursor else None,
                "cursor_id": cursor[1] if cursor else None,
            }).fetchall()
        return [_run_view({**row, "fail_fast": True, "inputs": None, "outputs": None,
                           "error": None, "deadline_at": None}, None) for row in rows]

    @transient
    def events(self, run_id: uuid.UUID, *, after: int = 0, limit: int = 1000) -> list[RunEvent]:
        with self._tx() as cur:
            rows = cur.execute(queries()["events_after"], {
                "run_id": run_id, "after": after, "limit": limit,
            }).fetchall()
        return [RunEvent(**row) for row in rows]

    # ===== workers and executors ======================================================

    @transient
    def register_worker(
        self, *, worker: str, hostname: str, pid: int, queues: list[str], threads: int,
        executors: list[ExecutorInfo], heartbeat_s: float = 5.0,
    ) -> None:
        q = queries()
        with self._tx() as cur:
            cur.execute(q["register_worker"], {
                "id": worker, "hostname": hostname, "pid": pid, "queues": queues,
                "executors": [e.name for e in executors], "threads": threads,
                "heartbeat_s": heartbeat_s,
            })
            if executors:
                cur.execute(q["upsert_executors"], {
                    "names": [e.name for e in executors], "queues": [e.queue for e in executors],
                    "max_attempts": [e.max_attempts for e in executors],
                    "timeouts": [e.timeout_s for e in executors],
                    "concurrency": [e.concurrency for e in executors],
                    "rates": [e.rate_per_s for e in executors],
                })

    @transient
    def stop_worker(self, worker: str) -> None:
        with self._tx() as cur:
            cur.execute(queries()["stop_worker"], {"id": worker})

    def known_executors(self, *, max_age_s: float = 0.0) -> dict[str, ExecutorInfo]:
        """Executors some worker has served; `max_age_s` allows a cached answer."""
        cached_at, cached = self._executors_cache
        if cached is not None and time.monotonic() - cached_at <= max_age_s:
            return cached
        fresh = self._load_executors()
        self._executors_cache = (time.monotonic(), fresh)
        return fresh

    @transient
    def _load_executors(self) -> dict[str, ExecutorInfo]:
        with self._tx() as cur:
            rows = cur.execute(queries()["known_executors"]).fetchall()
        return {row["name"]: ExecutorInfo(**row) for row in rows}

    @transient
    def unserved_nodes(self, run_id: uuid.UUID) -> list[dict[str, Any]]:
        """A run's waiting nodes that no live worker serves, per (executor, queue)."""
        with self._tx(one_statement=True) as cur:
            return cur.execute(queries()["unserved_run_nodes"], {"run_id": run_id}).fetchall()

    def known_queues(self, *, max_age_s: float = 0.0) -> frozenset[str]:
        """Queues some worker or executor has declared; `max_age_s` allows a cached answer."""
        cached_at, cached = self._queues_cache
        if cached is not None and time.monotonic() - cached_at <= max_age_s:
            return cached
        fresh = self._load_queues()
        self._queues_cache = (time.monotonic(), fresh)
        return fresh

    @transient
    def _load_queues(self) -> frozenset[str]:
        with self._tx() as cur:
            rows = cur.execute(queries()["known_queues"]).fetchall()
        return frozenset(row["queue"] for row in rows)

    # ===== maintenance (the sweeper's statements) =====================================

    def reclaim_expired(self, *, now: datetime | None = None, limit: int = 100) -> dict[str, int]:
        """Expired leases count as failed attempts: requeue with backoff, or fail.

        Each lease is reclaimed in a short transaction of its own, so a run's lock is
        held for one lease only. A lease or run another transaction holds is skipped, not
        waited for (`skipped`; the next pass takes it), and every transition is fenced, so
        parallel sweepers reclaim each lease once. `candidates`: expired leases seen.
        """
        counts = {"reclaimed": 0, "retried": 0, "failed": 0, "skipped": 0, "candidates": 0}
        candidates = self._expired_leases(now, limit)
        counts["candidates"] = len(candidates)
        for node_id in candidates:
            outcome = self._reclaim_one(node_id, now)
            if outcome == "busy":
                counts["skipped"] += 1
            elif outcome != "stale":
                counts["reclaimed"] += 1
                counts["retried" if outcome == "retry" else "failed"] += 1
        return counts

    @transient
    def _expired_leases(self, now: datetime | None, limit: int) -> list[int]:
        with self._tx(one_statement=True) as cur:
            return [r["id"] for r in cur.execute(
                queries()["expired_leases"], {"now": now, "limit": limit}).fetchall()]

    @transient
    def _reclaim_one(self, node_id: int, now: datetime | None) -> str:
        with self._tx() as cur:
            if cur.execute(queries()["lock_expired_lease"],
                           {"id": node_id, "now": now}).fetchone() is None:
                return "busy" if self._still_expired(cur, node_id, now) else "stale"
            return self._fail_in(cur, node_id, None, LEASE_EXPIRED, lease_expired=True)

    @staticmethod
    def _still_expired(cur: psycopg.Cursor[Any], node_id: int, now: datetime | None) -> bool:
        """Not lockable: held by another transaction (busy), or already reclaimed?"""
        return bool(cur.execute(queries()["lease_still_expired"], {
            "id": node_id, "now": now}).fetchone())

    @transient
    def expire_dead_workers(
        self, *, dead_after_s: float, now: datetime | None = None
    ) -> dict[str, int]:
        """Workers silent for `dead_after_s` are dead; their leases expire at once."""
        with self._tx() as cur:
            row = cur.execute(queries()["expire_dead_worker_leases"], {
                "now": now, "dead_after_s": dead_after_s,
            }).fetchone()
        return {"workers": row["workers"], "leases": row["leases"]}

    @transient
    def heal_runs(self, *, limit: int = 100) -> int:
        """Finish open runs none of whose nodes is open (recounting from the nodes)."""
        q = queries()
        healed = 0
        with self._tx() as cur:
            for row in cur.execute(q["runs_needing_heal"], {"limit": limit}).fetchall():
                counts = cur.execute(q["count_run_nodes"], {"run_id": row["id"]}).fetchone()
                if counts["remaining"]:
                    continue
                # A run another transaction holds is not finished here: not waited for.
                run = cur.execute(q["try_lock_run"], {"run_id": row["id"]}).fetchone()
                if run is None or run["status"] not in OPEN_RUN_STATUSES:
                    continue
                status = final_run_status(counts["failed"], counts["succeeded"],
                                          run["fail_fast"])
                cur.execute(q["update_run_progress"], {
                    "run_id": row["id"], "nodes_remaining": 0,
                    "nodes_failed": counts["failed"], "nodes_succeeded": counts["succeeded"],
                    "status": status, "finished": True, "error": None,
                })
                fx = _Effects()
                fx.event(row["id"], None, f"run_{status}", None, {"healed": True})
                fx.flush(cur)
                healed += 1
        if healed:
            log.warning("healed %d run(s) whose nodes had all finished", healed)
        return healed

    @transient
    def enforce_deadlines(self, *, now: datetime | None = None, limit: int = 100) -> int:
        """Runs past their deadline: cancel what remains and fail the run."""
        with self._tx() as cur:
            ids = [r["id"] for r in cur.execute(
                queries()["runs_past_deadline"], {"now": now, "limit": limit}).fetchall()]
        return sum(self._expire_run(run_id) for run_id in ids)

    @transient
    def _expire_run(self, run_id: uuid.UUID) -> int:
        """Fail one run past its deadline, unless another transaction holds one of its
        waiting nodes or the run itself: then the next pass does it (never waited for)."""
        try:
            return self._expire_run_now(run_id)
        except psycopg.errors.LockNotAvailable:
            return 0

    def _expire_run_now(self, run_id: uuid.UUID) -> int:
        q = queries()
        with self._tx() as cur:
            cur.execute(q["lock_waiting_nodes_nowait"], {"run_id": run_id})
            run = cur.execute(q["try_lock_run"], {"run_id": run_id}).fetchone()
            if run is None or run["status"] not in OPEN_RUN_STATUSES:
                return 0
            nodes = cur.execute(q["cancel_waiting_nodes"], {"run_id": run_id}).fetchall()
            fx, tally = _Effects(), _Tally(fail_run=True)
            tally.error = {"type": "DeadlineExceeded", "message": "the run passed its deadline"}
            for node in nodes:
                if node["parent_id"] is None:
                    tally.done += 1
                    fx.event(run_id, node["node_key"], "node_cancelled", None,
                             {"reason": "run deadline passed"})
            self._account(cur, fx, tally, run_id)
            fx.flush(cur)
        return 1

    @transient
    def prune(self, *, retention_s: float, now: datetime | None = None, limit: int = 500) -> int:
        """Delete one batch of finished runs older than the retention (with nodes, events)."""
        q = queries()
        params = {"now": now, "retention_s": retention_s, "limit": limit}
        with self._tx() as cur:
            pruned = len(cur.execute(q["prune_finished_runs"], params).fetchall())
            cur.execute(q["prune_stopped_workers"], params)
        return pruned

    # ===== schedules ==================================================================

    @transient
    def insert_schedule(
        self, *, tenant: str, workflow: Any, version: int | None, cron: str, timezone: str,
        inputs: Any,
    ) -> ScheduleRecord:
        with self._tx() as cur:
            row = cur.execute(queries()["insert_schedule"], {
                "id": uuid.uuid4(), "tenant": tenant, "workflow": Jsonb(workflow),
                "version": version, "cron": cron, "timezone": timezone,
                "inputs": Jsonb(inputs),
            }).fetchone()
        return _schedule(row)

    @transient
    def get_schedule(self, schedule_id: uuid.UUID, tenant: str | None) -> ScheduleRecord:
        with self._tx() as cur:
            row = cur.execute(queries()["get_schedule"], {"id": schedule_id}).fetchone()
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise NotFound(f"schedule {schedule_id} not found")
        return _schedule(row)

    @transient
    def list_schedules(self, tenant: str | None) -> list[ScheduleRecord]:
        with self._tx() as cur:
            rows = cur.execute(queries()["list_schedules"], {"tenant": tenant}).fetchall()
        return [_schedule(row) for row in rows]

    @transient
    def delete_schedule(self, schedule_id: uuid.UUID, tenant: str | None) -> None:
        with self._tx() as cur:
            row = cur.execute(queries()["delete_schedule"],
                              {"id": schedule_id, "tenant": tenant}).fetchone()
        if row is None:
            raise NotFound(f"schedule {schedule_id} not found")

    @transient
    def record_firing(
        self, schedule_id: uuid.UUID, fire_at: datetime, run_id: uuid.UUID | None,
        error: str | None,
    ) -> None:
        with self._tx() as cur:
            cur.execute(queries()["record_firing"], {
                "id": schedule_id, "fire_at": fire_at, "run_id": run_id, "error": error})

    # ===== api keys ===================================================================

    @transient
    def insert_api_key(self, *, tenant: str, key_hash: str, admin: bool) -> uuid.UUID:
        key_id = uuid.uuid4()
        with self._tx() as cur:
            cur.execute(queries()["insert_api_key"], {
                "id": key_id, "tenant": tenant, "key_hash": key_hash, "admin": admin,
            })
        return key_id

    @transient
    def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        with self._tx() as cur:
            row = cur.execute(queries()["api_key_by_hash"], {"key_hash": key_hash}).fetchone()
        return ApiKey(**row) if row else None


    # ===== api (queues, metrics) =====================================================

    @transient
    def queue_stats(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Per queue: queued (ready), delayed, running, oldest_queued_age_s and
        failed_last_hour, ordered by queue name; counting only `tenant`'s nodes if given
        (the same queues either way)."""
        with self._tx(one_statement=True) as cur:
            return cur.execute(queries()["api_queue_stats"], {"tenant": tenant}).fetchall()

    def readiness(self, *, timeout_s: float = 2.0) -> tuple[list[int], int | None]:
        """(pending migration versions, live workers) in one pool checkout; the workers
        are not counted (None) while migrations are pending. Not retried: a readiness
        probe must answer fast, so it raises DatabaseUnavailable within `timeout_s`,
        even when the server hangs."""
        from dagq.migrate import pending_migrations

        try:
            with self._connection(time.monotonic() + timeout_s) as conn:
                pending = pending_migrations(conn)  # (its queries prove the database up)
                workers = None if pending else \
                    conn.execute(queries()["live_worker_count"]).fetchone()["workers"]
                conn.rollback()
                return pending, workers
        except DatabaseTimeout as exc:
            raise DatabaseUnavailable(f"the database did not answer within {timeout_s}s"
                                      ) from exc
        except psycopg.Error as exc:
            raise DatabaseUnavailable(f"database unavailable: {exc}") from exc

    @transient
    def metric_gauges(self) -> dict[str, int]:
        """Open runs by status and pending nodes of open runs (cheap: partial indexes)."""
        with self._tx() as cur:
            return cur.execute(queries()["api_metric_gauges"]).fetchone()

    @transient
    def last_event_id(self) -> int:
        with self._tx() as cur:
            return cur.execute(queries()["api_last_event_id"]).fetchone()["id"]

    @transient
    def event_tail(
        self, *, after: int, limit: int = 10_000, settle_s: float = 2.0
    ) -> list[dict[str, Any]]:
        """Events of every run after the id `after`, oldest first, each with `settled`
        (older than settle_s) and, for finished node attempts, executor and duration_s."""
        with self._tx() as cur:
            return cur.execute(queries()["api_event_tail"], {
                "after": after, "limit": limit, "settle_s": float(settle_s),
            }).fetchall()

    # ===== dashboard =====

    @transient
    def list_workers(self, *, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Rows of dagq.worker_status, live workers first: id, status, hostname, pid,
        queues, threads, started_at, heartbeat_at, heartbeat_age_s, running,
        expired_leases, stopped_at."""
        with self._tx() as cur:
            return cur.execute(queries()["dashboard_workers"], {
                "status": status, "limit": limit}).fetchall()


def _node_rows(spec: WorkflowSpec, run_priority: int) -> list[dict[str, Any]]:
    """The node_tasks rows of a new run, as JSON for jsonb_to_recordset."""
    defaults = spec.defaults
    dependents = spec.dependents()
    rows = []
    for key in spec.topological_order():
        node = spec.nodes[key]
        backoff = node.backoff or defaults.backoff
        rows.append({
            "node_key": key, "executor": node.executor,
            "queue": node.queue or defaults.queue,
            "status": "pending" if node.depends_on else "queued",
            "priority": run_priority + node.priority,
            "max_attempts": node.max_attempts or defaults.max_attempts,
            "timeout_s": node.timeout_s or defaults.timeout_s,
            "backoff_initial_s": backoff.initial_s, "backoff_max_s": backoff.max_s,
            "params": node.params, "depends_on": node.depends_on,
            "dependents": dependents[key],
            "condition": node.if_.model_dump(by_alias=True) if node.if_ else None,
            "map_over": node.map.model_dump() if node.map else None,
        })
    return rows


def _schedule(row: dict[str, Any]) -> ScheduleRecord:
    return ScheduleRecord(schedule_id=row["id"], **{k: v for k, v in row.items() if k != "id"})


def _run_view(row: dict[str, Any], nodes: list[dict[str, Any]] | None) -> RunView:
    node_views = None
    if nodes is not None:
        node_views = [_node_view(n) for n in nodes]
    return RunView(
        run_id=row["id"], tenant=row["tenant"], workflow=row["workflow"],
        workflow_version=row["workflow_version"], event_key=row["event_key"],
        status=row["status"], priority=row["priority"], fail_fast=row["fail_fast"],
        inputs=row["inputs"], outputs=row["outputs"], error=row["error"],
        nodes_total=row["nodes_total"], nodes_remaining=row["nodes_remaining"],
        deadline_at=row["deadline_at"], created_at=row["created_at"],
        started_at=row["started_at"], finished_at=row["finished_at"], nodes=node_views,
    )


def _node_view(n: dict[str, Any]) -> NodeView:
    duration = None
    if n["started_at"] and n["finished_at"]:
        duration = round((n["finished_at"] - n["started_at"]).total_seconds() * 1000, 3)
    return NodeView(
        key=n["node_key"], executor=n["executor"], status=n["status"], attempts=n["attempts"],
        max_attempts=n["max_attempts"], depends_on=n["depends_on"], queued_at=n["queued_at"],
        started_at=n["started_at"], finished_at=n["finished_at"], duration_ms=duration,
        outputs=n["outputs"], error=n["error"], lease_owner=n["lease_owner"],
        lease_expires_at=n["lease_expires_at"], items=n["items"] or None,
    )

