"""A cancel tells the workers after it commits (issue 27, point 8): `dagq_cancelled`
carries the cancelled runs' ids, for an API cancel and for the runs a concurrency key's
`cancel_running` replaces (workers/listener.py hands them to the supervisor)."""

from __future__ import annotations

import psycopg

from dagq.store import Store
from tests.harness.specs import spec


def cancelled_payloads(listener: psycopg.Connection) -> list[str]:
    return [n.payload for n in listener.notifies(timeout=2.0, stop_after=1)
            if n.channel == "dagq_cancelled"]


def listening(db_url: str) -> psycopg.Connection:
    conn = psycopg.connect(db_url, autocommit=True)
    conn.execute("LISTEN dagq_cancelled")
    return conn


def test_an_api_cancel_notifies_the_run_id(repo: Store, db_url: str) -> None:
    run_id = repo.submissions.submit_run(
        tenant="t", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
    repo.leases.lease(worker="w1", queue="default", limit=1, ttl_s=30)
    with listening(db_url) as listener:
        repo.runs.cancel_run(run_id, "t")
        assert cancelled_payloads(listener) == [str(run_id)]


def test_cancel_running_notifies_the_replaced_run(repo: Store, db_url: str) -> None:
    wf = spec({"a": {"executor": "builtin.noop"}}, name="chat", concurrency={
        "key": "inputs.c", "limit": 1, "on_limit": "cancel_running"})
    first = repo.submissions.submit_run(tenant="t", spec=wf, inputs={"c": "1"}).run_id
    with listening(db_url) as listener:
        repo.submissions.submit_run(tenant="t", spec=wf, inputs={"c": "1"})
        assert cancelled_payloads(listener) == [str(first)]


def test_a_run_that_finished_notifies_nothing(repo: Store, db_url: str) -> None:
    run_id = repo.submissions.submit_run(
        tenant="t", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
    repo.runs.cancel_run(run_id, "t")
    with listening(db_url) as listener:
        repo.runs.cancel_run(run_id, "t")  # already cancelled: nothing to stop
        assert cancelled_payloads(listener) == []
