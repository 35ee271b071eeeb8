"""Issue 27 (8): one run's row held by another client (frozen inside its transaction)
holds up no worker's work on other runs. A worker's lock waits are short
(DAGQ_WORKER_LOCK_TIMEOUT_S); past one, a lease steps around the locked run's nodes and a
completion batch commits its other runs at once, while the locked run's completions
wait apart and commit once the row is free.

Before the fix both waited for the locked run for as long as its lock was held (each
try up to the lock timeout, then retried with back-off), and with it every other run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from dagq.config import Settings
from dagq.models import ExecutorInfo
from dagq.runtime.db import SessionLimits, open_pool
from dagq.store import Completion, Store
from dagq.workers.completions import CompletionBatcher
from tests.harness.procs import wait_for
from tests.harness.specs import spec

ONE = spec({"a": {"executor": "builtin.noop"}}, name="one")
WIDE = spec({f"n{i}": {"executor": "builtin.noop"} for i in range(6)}, name="wide")
# Well under the time a store waiting for the lock would take (its retries: RETRY_S).
BOUND_S = 3.0
RETRY_S = 6.0


@pytest.fixture
def worker_store(db_url: str) -> Iterator[Store]:
    """A store on a worker's session limits (lock waits of 0.3 s here)."""
    limits = SessionLimits.for_workers(Settings(worker_lock_timeout_s=0.3))
    store = Store(open_pool(db_url, size=4, name="worker", generic_plans=True,
                            limits=limits), retry_s=RETRY_S)
    yield store
    store.close()


@pytest.fixture
def hold(db_url: str) -> Iterator[Any]:
    """hold(run_id): another session takes the run's row, as dagq's transactions do,
    and keeps it until the test ends (or `.rollback()`)."""
    holders: list[psycopg.Connection] = []

    def take(run_id) -> psycopg.Connection:
        holder = psycopg.connect(db_url)
        holder.execute("SELECT 1 FROM dagq.runs WHERE id = %s FOR NO KEY UPDATE", (run_id,))
        holders.append(holder)
        return holder

    yield take
    for holder in holders:
        holder.close()


def test_the_worker_sessions_wait_briefly_for_locks() -> None:
    settings = Settings(db_lock_timeout_s=10, worker_lock_timeout_s=1)
    assert SessionLimits.for_workers(settings).lock_timeout_s == 1
    off = Settings(db_lock_timeout_s=10, worker_lock_timeout_s=0)
    assert SessionLimits.for_workers(off).lock_timeout_s == 10
    assert SessionLimits.for_workers(Settings(db_lock_timeout_s=0.5)).lock_timeout_s == 0.5


def test_a_lease_steps_around_a_locked_run(repo: Store, worker_store: Store, hold) -> None:
    locked = repo.submissions.submit_run(tenant="t", spec=WIDE).run_id  # its nodes come first
    other = repo.submissions.submit_run(tenant="t", spec=ONE).run_id
    hold(locked)
    started = time.monotonic()
    leased = worker_store.leases.lease(worker="w", queue="default", limit=4, ttl_s=30)
    took = time.monotonic() - started
    assert [n.run_id for n in leased] == [other]
    assert took < BOUND_S, f"the lease took {took:.1f}s"
    # The next leases step around it at once, without another wait.
    again = repo.submissions.submit_run(tenant="t", spec=ONE).run_id
    started = time.monotonic()
    leased = worker_store.leases.lease(worker="w", queue="default", limit=4, ttl_s=30)
    assert [n.run_id for n in leased] == [again]
    assert time.monotonic() - started < 0.3
    assert repo.runs.get_run(locked).status == "queued"


def test_a_lease_takes_a_locked_runs_nodes_once_it_is_free(
        repo: Store, worker_store: Store, hold) -> None:
    locked = repo.submissions.submit_run(tenant="t", spec=ONE).run_id
    hold(locked).rollback()
    [node] = worker_store.leases.lease(worker="w", queue="default", limit=4, ttl_s=30)
    assert node.run_id == locked


def leased_pair(repo: Store, worker_store: Store) -> tuple[Any, Any]:
    """A node of a run about to be locked and a node of another run, both leased."""
    first = repo.submissions.submit_run(tenant="t", spec=ONE).run_id
    second = repo.submissions.submit_run(tenant="t", spec=ONE).run_id
    nodes = {n.run_id: n for n in worker_store.leases.lease(worker="w", queue="default",
                                                            limit=2, ttl_s=30)}
    return nodes[first], nodes[second]


def test_a_completion_batch_commits_other_runs_while_one_is_locked(
        repo: Store, worker_store: Store, hold, sql) -> None:
    locked_node, other_node = leased_pair(repo, worker_store)
    holder = hold(locked_node.run_id)
    outcomes: dict[int, bool | None] = {}

    def recorder(node_id: int):
        return lambda result: outcomes.__setitem__(node_id, result)

    batcher = CompletionBatcher(worker_store)
    batch = [(Completion(n.id, n.version, {"n": n.id}, run_id=n.run_id), recorder(n.id))
             for n in (locked_node, other_node)]
    batcher.start()
    try:
        started = time.monotonic()
        for item in batch:  # one batch: the committer takes both at once
            batcher._pending.put(item)
        wait_for(lambda: other_node.id in outcomes, BOUND_S,
                 "the other run's completion to commit")
        assert time.monotonic() - started < BOUND_S
        assert outcomes == {other_node.id: True}
        assert repo.runs.get_run(other_node.run_id).status == "succeeded"
        # The locked run's completion waits apart; later completions of that run join it
        # rather than hold up another batch.
        time.sleep(0.5)
        assert locked_node.id not in outcomes
        assert node_status(sql, locked_node.id) == "running"
        holder.rollback()
        wait_for(lambda: locked_node.id in outcomes, BOUND_S,
                 "the locked run's completion to commit once its row is free")
        assert outcomes[locked_node.id] is True
        assert repo.runs.get_run(locked_node.run_id).status == "succeeded"
    finally:
        batcher.stop()


def test_completions_of_a_run_held_apart_skip_the_wait(
        repo: Store, worker_store: Store, hold) -> None:
    """Once a run's completions wait apart, the next batch's completions of that run go
    straight there: the other runs of that batch commit without another lock wait."""
    locked = repo.submissions.submit_run(tenant="t", spec=WIDE).run_id
    nodes = repo.leases.lease(worker="w", queue="default", limit=2, ttl_s=30)
    hold(locked)
    batcher = CompletionBatcher(worker_store)
    batcher.start()
    try:
        outcomes: dict[int, bool | None] = {}
        batcher.submit(Completion(nodes[0].id, nodes[0].version, {}, run_id=locked),
                       lambda ok: outcomes.__setitem__(nodes[0].id, ok))
        wait_for(lambda: batcher.held, BOUND_S, "the locked run's completion to go apart")
        other = repo.submissions.submit_run(tenant="t", spec=ONE).run_id
        [node] = worker_store.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
        assert node.run_id == other
        written = batcher.written
        for item in [(Completion(nodes[1].id, nodes[1].version, {}, run_id=locked),
                      lambda ok: outcomes.__setitem__(nodes[1].id, ok)),
                     (Completion(node.id, node.version, {}, run_id=other),
                      lambda ok: outcomes.__setitem__(node.id, ok))]:
            batcher._pending.put(item)
        wait_for(lambda: node.id in outcomes, BOUND_S, "the other run's completion")
        assert outcomes == {node.id: True}
        # Only the other run's completion went through a transaction of this committer
        # (no try of the whole batch first, no split).
        assert batcher.written - written == 1
    finally:
        batcher.stop(timeout=0.5)


def node_status(sql, node_id: int) -> str:
    return sql.execute("SELECT status FROM dagq.node_tasks WHERE id = %s",
                       (node_id,)).fetchone()["status"]


def test_a_run_locked_for_good_holds_up_no_other_locked_run_and_loses_nothing(
        repo: Store, worker_store: Store, hold) -> None:
    """Two runs locked: one for good, one for a while. The patient committer tries them
    in turn: the second commits as soon as its row is free, and the first is neither
    written nor dropped while its row stays held, however long (past the store's retry
    window, RETRY_S, after which a waiting call used to give up and drop it)."""
    locked_for_good, locked_a_while = leased_pair(repo, worker_store)
    hold(locked_for_good.run_id)
    briefly = hold(locked_a_while.run_id)
    outcomes: dict[int, bool | None] = {}
    batcher = CompletionBatcher(worker_store)
    batcher.start()
    try:
        for node in (locked_for_good, locked_a_while):
            batcher.submit(Completion(node.id, node.version, {}, run_id=node.run_id),
                           lambda ok, node_id=node.id: outcomes.__setitem__(node_id, ok))
        wait_for(lambda: len(batcher.held) == 2, BOUND_S, "both runs to wait apart")
        time.sleep(1.0)
        briefly.rollback()
        freed_at = time.monotonic()
        wait_for(lambda: locked_a_while.id in outcomes, BOUND_S,
                 "the freed run's completion, behind the run locked for good")
        assert time.monotonic() - freed_at < BOUND_S
        assert outcomes == {locked_a_while.id: True}
        time.sleep(RETRY_S + 1)
        assert locked_for_good.id not in outcomes  # still waiting, not dropped
        assert batcher.held == {locked_for_good.run_id}
    finally:
        batcher.stop(timeout=0.5)


# ===== a lease frozen mid-transaction holding capped executors' rows ===================
CAPPED = ExecutorInfo(name="x.capped", concurrency=2)
PLAIN = ExecutorInfo(name="x.plain")


@pytest.fixture
def hold_executor(db_url: str) -> Iterator[Any]:
    """hold_executor(name): another session locks the executor's row as a lease of capped
    executors does (lock_capped_executors), and keeps it until the test ends."""
    holders: list[psycopg.Connection] = []

    def take(name: str) -> None:
        holder = psycopg.connect(db_url)
        holder.execute("SELECT 1 FROM dagq.executors WHERE name = %s FOR UPDATE", (name,))
        holders.append(holder)

    yield take
    for holder in holders:
        holder.close()


def register(store: Store, *executors: ExecutorInfo) -> list[str]:
    return store.fleet.register_worker(worker="w2", hostname="h", pid=2, queues=["default"],
                                       threads=1, executors=list(executors))


def test_a_worker_registers_without_waiting_for_a_held_executor_row(
        repo: Store, worker_store: Store, hold_executor, sql) -> None:
    """Before the fix the start-up waited (each try up to the lock timeout, retried) for
    as long as another worker's lease held a capped executor's row."""
    assert register(repo, CAPPED, PLAIN) == []
    hold_executor(CAPPED.name)
    started = time.monotonic()
    assert register(worker_store, CAPPED, PLAIN) == []  # unchanged: not written at all
    changed = CAPPED.model_copy(update={"concurrency": 5})
    assert register(worker_store, changed, PLAIN) == [CAPPED.name]  # held: to write later
    assert time.monotonic() - started < BOUND_S
    assert sql.execute("SELECT status FROM dagq.workers WHERE id = 'w2'").fetchone()[
        "status"] == "alive"
    caps = sql.execute("SELECT concurrency FROM dagq.executors WHERE name = %s",
                       (CAPPED.name,)).fetchone()["concurrency"]
    assert caps == 2  # still the stored declaration until the row is free


def test_a_changed_executor_is_written_once_its_row_is_free(repo: Store, sql) -> None:
    assert register(repo, CAPPED) == []
    assert register(repo, CAPPED.model_copy(update={"concurrency": 5}),
                    ExecutorInfo(name="x.new", queue="q")) == []
    rows = {r["name"]: r for r in sql.execute(
        "SELECT name, queue, concurrency FROM dagq.executors WHERE name LIKE 'x.%'")}
    assert rows["x.capped"]["concurrency"] == 5 and rows["x.new"]["queue"] == "q"


def test_a_lease_around_locked_rows_skips_a_held_capped_executor(
        repo: Store, worker_store: Store, hold, hold_executor) -> None:
    """A lease waits once for the held row, then leases the other executors' nodes; the
    held capped executor's nodes are left alone (never leased past its cap)."""
    register(repo, CAPPED, PLAIN)
    capped = repo.submissions.submit_run(tenant="t", spec=spec(
        {"c": {"executor": CAPPED.name}}, name="capped")).run_id
    plain = repo.submissions.submit_run(tenant="t", spec=spec(
        {"p": {"executor": PLAIN.name}}, name="plain")).run_id
    hold_executor(CAPPED.name)
    lease = {"worker": "w", "queue": "default", "limit": 4, "ttl_s": 30,
             "executors": [CAPPED.name, PLAIN.name], "capped": [CAPPED.name]}
    started = time.monotonic()
    leased = worker_store.leases.lease(**lease)
    assert time.monotonic() - started < BOUND_S
    assert [n.run_id for n in leased] == [plain]
    assert repo.runs.get_run(capped).status == "queued"
