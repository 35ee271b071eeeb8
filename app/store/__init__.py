"""The store: the one place dagq's SQL runs (named queries from sql/queries/). `Store` is
one handle over one `Database` (one pool), with one repository per concern:

- `tx`: `Database` (the pool, transactions), transient retries, notify-after-commit,
  channel names; `notifier`: notifications sent by a thread of their own
- `machine/`: the run/node state machine inside a caller's transaction (`unit`: one
  transaction's unit of work; `release`: a node's end moving through its run;
  `children`: sub-workflow child runs; `failures`: failed attempts; `accounting`: runs
  accounted and finished; `waits`: when a wait ends and with what; `map_retry`: a
  retry of a map node's failed items only)
- `new_runs`: the rows a new run becomes and its first events (`NewRun`, `RunTemplate`)
- `concurrency`: concurrency keys' slots, decided inside a submit's transaction
- `lock_waits`: what a worker does when a run's row stays locked
- the repositories, one per attribute of `Store`: `workflows`, `submissions` (one run, or
  many in one statement: the API's group commit), `runs` (reads, cancel, retry),
  `reruns`, `resume` (resolving a node; a retry of a map's failed items only),
  `signals`, `leases` (a worker's statements: lease, heartbeat, complete +
  hand-off, fail, requeue), `streams`, `maintenance` (the sweeper's passes),
  `partitions` (day partitions of events and chunks: made ahead, dropped whole), `fleet`
  (workers, executors, queues), `schedules`, `tenants` (and API keys), `ops` (queue
  statistics, readiness, metrics, the event tail), `messages` (plain Dramatiq messages,
  results, counters, dead letters), `webhooks` (subscriptions and their outbox of
  deliveries), `waits` (open signal waits with their forms; respond links), `triggers`
  (events and the runs they started), `submit_requests` (runs submitted from SQL, made
  by the sweeper), `traces` (what a tracing worker's attempt spans need), `pauses`
  (pauses of a queue, workflow, run or tenant), `usage` (the cost ledger: model usage
  per attempt, price tables), `budgets` (passed budgets enforced, tenants' daily budgets)
- `bulk` (a repository too): a batch of runs cancelled in one transaction

Every public method is one short transaction unless its docstring says otherwise. Node
rows are always locked before the run row (`lock_run`), and every transaction that
writes a run's events takes that run lock first, so a run's event ids follow commit
order (SSE resume relies on it). A decision that depends on the run's status (retry,
lease, requeue) reads it under that lock. The sweeper's statements never wait for a row
another transaction holds (SKIP LOCKED, NOWAIT): a client frozen inside a transaction
must not stall maintenance. Transient database errors (lock and statement timeouts
included) are retried, at the outermost call only (a repository's public method; the
machine never retries); a fenced no-op is a normal result. The listeners
(dagq.api.hub, dagq.workers.listener) hold their own LISTEN connections.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg_pool import ConnectionPool

from dagq.runtime.sqlfiles import queries
from dagq.store.budgets import BudgetRepo
from dagq.store.bulk import BulkRepo
from dagq.store.fleet import FleetCache, FleetRepo
from dagq.store.leases import Completion, Handoff, LeaseRepo, TenantCaps
from dagq.store.lock_waits import LockDodge, RunsLocked
from dagq.store.machine import Machine
from dagq.store.maintenance import MaintenanceRepo
from dagq.store.messages import MessageRepo
from dagq.store.new_runs import NewRun, Stale
from dagq.store.notifier import BackgroundNotifier
from dagq.store.ops import OpsRepo
from dagq.store.partitions import PartitionRepo
from dagq.store.pauses import PauseRepo, RefusingPauses
from dagq.store.reruns import RerunRepo
from dagq.store.resume import ResumeRepo
from dagq.store.runs import RunRepo
from dagq.store.schedules import ScheduleRepo
from dagq.store.signals import SignalRepo
from dagq.store.streams import StreamRepo
from dagq.store.submissions import SubmissionRepo
from dagq.store.submit_requests import SubmitRequestRepo
from dagq.store.tenants import TenantRepo
from dagq.store.traces import TraceRepo
from dagq.store.triggers import TriggerRepo
from dagq.store.tx import TRANSIENT_RETRY_S, Database, transient
from dagq.store.usage import UsageRepo
from dagq.store.waits import WaitRepo
from dagq.store.webhooks import WebhookRepo
from dagq.store.workflows import WorkflowRepo

__all__ = ["Caches", "Completion", "Handoff", "NewRun", "RunsLocked", "Stale", "Store"]


@dataclass
class Caches:
    """What a process's Store remembers between calls. A Store derived from another
    (`bounded`, `notifying_in_background`) holds the same objects, so what one learns
    or forgets (a tenant's change forgets the tenants' caps) every one of them sees."""

    tenant_caps: TenantCaps = field(default_factory=TenantCaps)
    lock_dodge: LockDodge = field(default_factory=LockDodge)
    fleet: FleetCache = field(default_factory=FleetCache)
    refusing_pauses: RefusingPauses = field(default_factory=RefusingPauses)


class Store:
    """One pool; one repository per concern (see the module docstring)."""

    def __init__(
        self, pool: ConnectionPool | None = None, *, retry_s: float = TRANSIENT_RETRY_S,
        call_timeout_s: float | None = None, db: Database | None = None,
        caches: Caches | None = None,
    ) -> None:
        """A Store over `pool` (see Database for `retry_s` and `call_timeout_s`), or
        over `db` with `caches` (a derived Store: `bounded`, `notifying_in_background`)."""
        if db is None:
            if pool is None:
                raise TypeError("Store needs a pool (or a Database)")
            db = Database(pool, retry_s=retry_s, call_timeout_s=call_timeout_s)
        self.db = db
        self.caches = caches = caches or Caches()
        self.machine = m = Machine()
        self.workflows = WorkflowRepo(db)
        self.submissions = SubmissionRepo(db, m)
        self.runs = RunRepo(db, m)
        self.bulk = BulkRepo(db, m)
        self.reruns = RerunRepo(db, m)
        self.resume = ResumeRepo(db, m)
        self.signals = SignalRepo(db, m)
        self.leases = LeaseRepo(db, m, tenant_caps=caches.tenant_caps,
                                lock_dodge=caches.lock_dodge)
        self.streams = StreamRepo(db)
        self.maintenance = MaintenanceRepo(db, m)
        self.partitions = PartitionRepo(db)
        self.fleet = FleetRepo(db, caches.fleet)
        self.schedules = ScheduleRepo(db)
        self.tenants = TenantRepo(db, on_change=caches.tenant_caps.forget)
        self.ops = OpsRepo(db)
        self.messages = MessageRepo(db, m)
        self.webhooks = WebhookRepo(db)
        self.waits = WaitRepo(db, m)
        self.triggers = TriggerRepo(db, m)
        self.submit_requests = SubmitRequestRepo(db)
        self.traces = TraceRepo(db)
        self.pauses = PauseRepo(db, caches.refusing_pauses)
        self.usage = UsageRepo(db, m)
        self.budgets = BudgetRepo(db, m)

    def bounded(self, seconds: float) -> Store:
        """This store (same pool, same caches), for calls that must give up after about
        `seconds` (see Database.bounded)."""
        return Store(db=self.db.bounded(seconds), caches=self.caches)

    def notifying_in_background(self, notifier: BackgroundNotifier) -> Store:
        """This store (same pool, same caches) handing its notifications to `notifier`
        once committed (see Database.notifying_in_background)."""
        return Store(db=self.db.notifying_in_background(notifier), caches=self.caches)

    def committing_later(self) -> Store:
        """This store (same pool, same caches) whose transactions do not wait for their
        WAL flush; call flush_commits before answering for them (Database.committing_later)."""
        return Store(db=self.db.committing_later(), caches=self.caches)

    @transient
    def flush_commits(self) -> None:
        """Wait until every commit made so far on this server is durable (one flush)."""
        with self.db.tx() as cur:
            cur.execute(queries()["flush_commits"])

    def close(self) -> None:
        self.db.close()

    @transient
    def ping(self) -> bool:
        with self.db.tx() as cur:
            return cur.execute(queries()["ping"]).fetchone() is not None
