"""The node state machine (dagq.store.machine) on a real Postgres, entry point by
entry point: a worker's failed attempt (fenced by version) and the sweeper's expired
lease, each decided into retry, failed for good, or stopped, with the run accounted."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from dagq.store import Store
from dagq.store.machine.unit import UnitOfWork
from tests.harness.drive import complete
from tests.harness.specs import spec

BOOM = {"type": "Boom", "message": "it broke"}


def lease_one(repo: Store, key: str) -> tuple[int, int]:
    """Lease node `key` (and hand back whatever else was leased with it)."""
    leased = repo.leases.lease(worker="w", queue="default", limit=16, ttl_s=30)
    repo.leases.requeue_unstarted(worker="w", leases=[
        (n.id, n.version) for n in leased if n.node_key != key])
    found = [(n.id, n.version) for n in leased if n.node_key == key]
    assert found, f"{key} was not leasable"
    return found[0]


def fail_attempt(repo: Store, node_id: int, version: int, *, retryable: bool = True,
                 cancelled: bool = False) -> str:
    with repo.db.tx() as cur:
        return repo.machine.failures.fail_attempt(cur, node_id, version, BOOM, retryable=retryable,
                                                  cancelled=cancelled)


def statuses(sql, run_id) -> dict[str, str]:
    rows = sql.execute("SELECT node_key, status FROM dagq.node_tasks WHERE run_id = %s "
                       "AND parent_id IS NULL", (run_id,)).fetchall()
    return {r["node_key"]: r["status"] for r in rows}


def run_row(sql, run_id):
    return sql.execute("SELECT status, error, nodes_remaining FROM dagq.runs WHERE id = %s",
                       (run_id,)).fetchone()


def event_types(sql, run_id, key=None) -> list[str]:
    rows = sql.execute("SELECT node_key, type FROM dagq.run_events WHERE run_id = %s "
                       "ORDER BY id", (run_id,)).fetchall()
    return [r["type"] for r in rows if key is None or r["node_key"] == key]


def test_a_retryable_failure_with_attempts_left_is_retried_later(repo: Store, sql) -> None:
    wf = spec({"a": {"executor": "builtin.noop", "max_attempts": 2,
                     "backoff": {"initial_s": 5, "max_s": 5}}})  # 2.5-5 s
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    assert fail_attempt(repo, *lease_one(repo, "a")) == "retry"
    row = sql.execute("SELECT status, attempts, available_at > now() + interval '2 s' AS later"
                      " FROM dagq.node_tasks WHERE run_id = %s", (run_id,)).fetchone()
    assert (row["status"], row["attempts"], row["later"]) == ("queued", 1, True)
    assert event_types(sql, run_id, "a")[-1] == "node_retry"
    assert run_row(sql, run_id)["status"] == "running"


def test_the_last_attempt_fails_for_good_and_fail_fast_cancels_the_rest(repo, sql) -> None:
    wf = spec({"a": {"executor": "builtin.noop", "max_attempts": 1},
               "b": {"executor": "builtin.noop"},
               "c": {"executor": "builtin.noop", "depends_on": ["b"]}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    assert fail_attempt(repo, *lease_one(repo, "a")) == "failed"
    assert statuses(sql, run_id) == {"a": "failed", "b": "cancelled", "c": "cancelled"}
    run = run_row(sql, run_id)
    assert run["status"] == "failed" and run["nodes_remaining"] == 0
    assert run["error"]["node"] == "a" and run["error"]["type"] == "Boom"
    assert event_types(sql, run_id)[-1] == "run_failed"


def test_without_fail_fast_only_descendants_are_skipped(repo: Store, sql) -> None:
    wf = spec({"a": {"executor": "builtin.noop", "max_attempts": 1},
               "a2": {"executor": "builtin.noop", "depends_on": ["a"]},
               "b": {"executor": "builtin.noop"}}, fail_fast=False)
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    node_b = lease_one(repo, "b")
    assert fail_attempt(repo, *lease_one(repo, "a")) == "failed"
    assert statuses(sql, run_id) == {"a": "failed", "a2": "skipped", "b": "running"}
    assert run_row(sql, run_id)["status"] == "running"
    assert complete(repo, *node_b, {})
    assert run_row(sql, run_id)["status"] == "partial_succeeded"


def test_an_outcome_with_an_old_version_changes_nothing_and_is_counted(repo, sql) -> None:
    run_id = repo.submissions.submit_run(
        tenant="t", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
    node_id, version = lease_one(repo, "a")
    assert fail_attempt(repo, node_id, version - 1) == "stale"
    assert statuses(sql, run_id) == {"a": "running"}
    assert sql.execute("SELECT value FROM dagq.counters WHERE name = 'stale_completions'"
                       ).fetchone()["value"] == 1


def test_a_failure_in_a_finished_run_ends_the_node_cancelled(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(
        tenant="t", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
    node = lease_one(repo, "a")
    repo.runs.cancel_run(run_id, "t")
    assert fail_attempt(repo, *node) == "cancelled"  # it would have been retried
    assert statuses(sql, run_id) == {"a": "cancelled"}
    assert "node_retry" not in event_types(sql, run_id)


def test_a_worker_told_to_stop_ends_its_node_cancelled(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(
        tenant="t", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
    assert fail_attempt(repo, *lease_one(repo, "a"), cancelled=True) == "cancelled"
    assert statuses(sql, run_id) == {"a": "cancelled"}
    assert "node_retry" not in event_types(sql, run_id)


def test_an_expired_lease_is_a_retryable_attempt_with_its_own_event(repo, sql) -> None:
    run_id = repo.submissions.submit_run(
        tenant="t", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
    node_id, _ = lease_one(repo, "a")
    with repo.db.tx() as cur:
        assert repo.machine.failures.expire_lease(cur, node_id, {"type": "LeaseExpired"}) == "retry"
    assert event_types(sql, run_id, "a")[-2:] == ["node_lease_expired", "node_retry"]


def test_the_sweeper_never_waits_for_a_run_another_transaction_holds(repo, db_url) -> None:
    run_id = repo.submissions.submit_run(
        tenant="t", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
    node_id, _ = lease_one(repo, "a")
    with psycopg.connect(db_url) as holder:
        holder.execute("SELECT 1 FROM dagq.runs WHERE id = %s FOR UPDATE", (run_id,))
        with repo.db.tx() as cur:
            assert repo.machine.failures.expire_lease(
                cur, node_id, {"type": "LeaseExpired"}) == "busy"
        holder.rollback()


def test_a_map_item_failing_for_good_fails_its_map_node(repo: Store, sql) -> None:
    wf = spec({"src": {"executor": "builtin.echo", "params": {"items": [1, 2, 3]}},
               "each": {"executor": "builtin.noop", "depends_on": ["src"], "max_attempts": 1,
                        "map": {"dep": "src", "path": "params.items"}}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    node_id, version = lease_one(repo, "src")
    assert complete(repo, node_id, version, {"params": {"items": [1, 2, 3]}})
    items = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)  # two stay queued
    assert fail_attempt(repo, items[0].id, items[0].version) == "failed"
    item_rows = sql.execute("SELECT status FROM dagq.node_tasks WHERE run_id = %s AND "
                            "parent_id IS NOT NULL ORDER BY id", (run_id,)).fetchall()
    assert [r["status"] for r in item_rows] == ["failed", "cancelled", "cancelled"]
    assert statuses(sql, run_id)["each"] == "failed"
    assert run_row(sql, run_id)["status"] == "failed"


def test_a_unit_of_work_accounts_each_run_once() -> None:
    work, run = UnitOfWork(), uuid.uuid4()
    work.ended(run, "succeeded")
    work.ended(run, "failed")
    work.ended(run)
    work.run_error(run, BOOM, fail_run=False)
    accounts = work.take_accounts()
    assert accounts is not None and accounts.obj == [{
        "run_id": str(run), "done": 3, "succeeded": 1, "failed": 1, "fail_run": False,
        "error": BOOM}]
    assert work.take_accounts() is None  # a second accounting adds nothing


@pytest.mark.parametrize("fail_run", [True, False])
def test_fail_run_once_set_stays_set(fail_run: bool) -> None:
    work, run = UnitOfWork(), uuid.uuid4()
    work.run_error(run, BOOM, fail_run=True)
    work.run_error(run, BOOM, fail_run=fail_run)
    assert work.take_accounts().obj[0]["fail_run"] is True


# (Moved from tests/unit/test_backoff.py: the rule now exists only in SQL.)
@pytest.mark.parametrize(("failed", "succeeded", "fail_fast", "status"), [
    (0, 5, True, "succeeded"), (0, 0, False, "succeeded"), (1, 4, True, "failed"),
    (1, 4, False, "partial_succeeded"), (2, 0, False, "failed"),
])
def test_final_run_status(sql, failed, succeeded, fail_fast, status) -> None:
    row = sql.execute("SELECT dagq.final_run_status(%s, %s, %s) AS s",
                      (failed, succeeded, fail_fast)).fetchone()
    assert row["s"] == status


def test_racing_registrations_of_one_name_each_get_a_version(repo: Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def register(i: int):
        return repo.workflows.register_workflow(spec({"a": {"executor": "builtin.noop",
                                                   "params": {"i": i}}}, name="raced"))

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(register, range(10)))
    assert sorted(record.version for record, created in results) == list(range(1, 11))
    assert all(created for _, created in results)
    again, created = register(3)  # an identical spec: the version it already has
    assert not created and again.version in range(1, 11)
