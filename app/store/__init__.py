"""The store: the one place dagq's SQL runs (named queries from sql/queries/), split by
concern. Each concern is a class in a module of its own over one transaction core;
`Store` combines them (one pool, one object for callers):

- `core`: the pool, transactions, transient retries, notify-after-commit, channel names
- `work`: one transaction's unit of work (events, wake-ups, released nodes, the
  per-run counts accounted once at its end)
- `accounting`: an error as event data (the rule that ends a run is SQL's
  dagq.final_run_status)
- `propagation`: a node's end moving through its run (release, skip, map expansion)
- `transitions`: failed attempts (retry, fail, stop) and run accounting
- `submit`: workflows and submitting runs
- `submit_many`: many validated runs in one statement (the API's group commit)
- `leases`: a worker's statements (lease, heartbeat, complete + hand-off, fail, requeue)
- `runs`: reading, cancelling and retrying runs
- `reruns`: a new run from a terminal one, copying what is not downstream of `from`
- `signals`: signals to wait nodes (stored, then delivered or buffered); `waits`: when
  a wait ends and with what (wait nodes start and end in `propagation`)
- `streams`: streamed node output (appended fenced and batched; the run's feed)
- `maintenance`: the sweeper's passes (reclaim, dead workers, heal, deadlines, waits,
  prune)
- `tenants`: tenants' weights and quotas, admission against them
- `directory`: workers, executors, queues, API keys, schedules
- `ops`: queue statistics, readiness, metrics, the event tail
- `messages`: plain Dramatiq messages (a queue's join and flush) and Dramatiq results
- `dead_letters`: plain messages no live worker serves (the worker's warning, the
  sweeper's dead-lettering)

Every public method is one short transaction unless its docstring says otherwise. Node
rows are always locked before the run row (`lock_run`), and every transaction that
writes a run's events takes that run lock first, so a run's event ids follow commit
order (SSE resume relies on it). A decision that depends on the run's status (retry,
lease, requeue) reads it under that lock. The sweeper's statements never wait for a row
another transaction holds (SKIP LOCKED, NOWAIT): a client frozen inside a transaction
must not stall maintenance. Transient database errors (lock and statement timeouts
included) are retried, at the outermost call only; a fenced no-op is a normal result.
The listeners (dagq.api.hub, dagq.workers.listener) hold their own LISTEN connections.
"""

from __future__ import annotations

from dagq.store.dead_letters import DeadLetterStore
from dagq.store.directory import DirectoryStore
from dagq.store.leases import Completion, Handoff, LeaseStore, RunsLocked
from dagq.store.maintenance import MaintenanceStore
from dagq.store.messages import MessageStore
from dagq.store.ops import OpsStore
from dagq.store.reruns import RerunStore
from dagq.store.signals import SignalStore
from dagq.store.streams import StreamStore
from dagq.store.submit import SubmitStore
from dagq.store.submit_many import NewRun, Stale, SubmitManyStore
from dagq.store.tenants import TenantStore

__all__ = ["Completion", "Handoff", "NewRun", "RunsLocked", "Stale", "Store"]


class Store(SubmitStore, SubmitManyStore, LeaseStore, SignalStore, RerunStore, StreamStore,
            MaintenanceStore, DirectoryStore, OpsStore, TenantStore, MessageStore,
            DeadLetterStore):
    """Every concern of the store over one pool (see the module docstring)."""
