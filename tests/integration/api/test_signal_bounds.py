"""Signals no node takes are bounded (issue 27): at most
DAGQ_MAX_BUFFERED_SIGNALS_PER_RUN kept per run, one more is a 409 `too_many_signals`
that writes nothing (also when two arrive at once), and they go with their run when
retention prunes it."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import psycopg
import pytest

from dagq.errors import Conflict, TooManySignals
from dagq.store import Store
from tests.harness.api import Api, assert_error, count_rows
from tests.harness.drive import drive
from tests.harness.specs import spec

# `approve` takes one signal and ends; `work` keeps the run open (leased, not completed):
# later signals of the name find no waiting node and are buffered.
ENDED_WAIT = {
    "approve": {"wait": {"signal": "approval"}},
    "work": {"executor": "builtin.noop"},
}


# Three buffered signals per run: the fourth is the one refused.
pytestmark = pytest.mark.api_settings(max_buffered_signals_per_run=3)


def signal(api: Api, run_id: str, **body: Any) -> Any:
    return api.client.post(f"/v1/runs/{run_id}/signals/approval", headers=api.acme,
                           json=body)


def open_run_with_ended_wait(repo: Store) -> uuid.UUID:
    run_id = repo.submissions.submit_run(tenant="acme", spec=spec(ENDED_WAIT, name="ended")).run_id
    [_] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=300)  # `work` stays running
    taken = repo.signals.send_signal(run_id, "approval", tenant="acme", signal_id="first")
    assert taken.delivered and taken.node_key == "approve"
    return run_id


def buffered(sql: psycopg.Connection, run_id: uuid.UUID | str) -> int:
    return sql.execute("SELECT count(*) AS n FROM dagq.signals WHERE run_id = %s "
                       "AND consumed_at IS NULL", (run_id,)).fetchone()["n"]


def test_a_run_keeps_at_most_the_cap_of_untaken_signals(api: Api, sql) -> None:
    run_id = str(open_run_with_ended_wait(api.repo))
    for i in range(3):
        sent = signal(api, run_id, signal_id=f"s-{i}")
        assert sent.status_code == 202 and sent.json()["delivered"] is False
    events = count_rows(sql, "run_events")
    body = assert_error(signal(api, run_id, signal_id="s-3", data={"x": 1}), 409,
                        "too_many_signals")
    assert "DAGQ_MAX_BUFFERED_SIGNALS_PER_RUN" in body["message"]
    assert body["details"] == {"run_id": run_id, "buffered": 3, "limit": 3}
    assert buffered(sql, run_id) == 3 and count_rows(sql, "run_events") == events
    assert count_rows(sql, "signals") == 4  # the delivered one and three kept
    again = signal(api, run_id, signal_id="s-1")  # a retried send is still answered
    assert again.status_code == 200 and again.json()["duplicate"] is True


def test_a_signal_taken_by_a_waiting_node_is_not_bounded(db_url: str, sql) -> None:
    approvals = {"approve": {"wait": {"signal": "approval"}}}
    with Api(db_url, max_buffered_signals_per_run=1) as api:
        first = str(api.submit(api.acme, workflow={"name": "one", "nodes": approvals})["run_id"])
        drive(api.repo)  # `approve` is waiting
        assert signal(api, first, signal_id="a").json()["delivered"] is True
        two = {"name": "two", "nodes": {**approvals, "again": {"wait": {"signal": "approval"}}}}
        second = str(api.submit(api.acme, workflow=two)["run_id"])
        assert signal(api, second, signal_id="b").status_code == 202  # delivered
        assert signal(api, second, signal_id="c").status_code == 202  # delivered
        assert buffered(sql, second) == 0


def test_two_signals_at_once_cannot_both_pass_the_cap(repo: Store, db_url: str, sql) -> None:
    """Both senders insert their row, then queue on the run's row lock (held here); once
    it is released, one of them is kept and the other refused."""
    run_id = open_run_with_ended_wait(repo)
    outcomes: list[object] = []

    def send(signal_id: str) -> None:
        try:
            outcomes.append(repo.signals.send_signal(run_id, "approval", tenant="acme",
                                                     signal_id=signal_id, max_buffered=1))
        except Conflict as exc:
            outcomes.append(exc)

    with psycopg.connect(db_url) as holder:
        holder.execute("SELECT 1 FROM dagq.runs WHERE id = %s FOR NO KEY UPDATE", (run_id,))
        senders = [threading.Thread(target=send, args=(f"race-{i}",)) for i in range(2)]
        for sender in senders:
            sender.start()
        wait_for_lock_waiters(sql, 2)
        holder.rollback()
    for sender in senders:
        sender.join(30)
    assert sorted(type(o).__name__ for o in outcomes) == ["SignalResult", "TooManySignals"]
    assert buffered(sql, run_id) == 1
    assert isinstance(next(o for o in outcomes if isinstance(o, Conflict)), TooManySignals)


def wait_for_lock_waiters(sql: psycopg.Connection, count: int) -> None:
    for _ in range(400):  # bounded: ~20 s at most
        waiting = sql.execute(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'").fetchone()["n"]
        if waiting >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{count} senders never queued on the run's lock")


def test_buffered_signals_go_with_their_run_at_retention(repo: Store, sql) -> None:
    run_id = open_run_with_ended_wait(repo)
    repo.signals.send_signal(run_id, "approval", tenant="acme", signal_id="kept", max_buffered=5)
    repo.runs.cancel_run(run_id, "acme")
    sql.execute("UPDATE dagq.runs SET finished_at = now() - interval '10 days'")
    assert repo.maintenance.prune(retention_s=86400) == 1
    assert count_rows(sql, "signals") == 0
