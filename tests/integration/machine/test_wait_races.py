"""Durable waits against the lock rules (review findings, on a real Postgres): the
sweeper never waits for a node row another transaction holds, a run whose first node
is a wait is running, a buffered signal is never taken by a node cancelled in the same
transaction, and signals lock wait nodes in the order releases do."""

from __future__ import annotations

import threading
import time

import psycopg
from psycopg.rows import dict_row

from dagq.config import Settings
from dagq.store import Store
from dagq.sweeper.passes import Sweeper
from tests.harness.drive import complete
from tests.harness.specs import spec


def test_a_run_whose_root_is_a_wait_is_running(repo: Store, sql) -> None:
    wf = spec({"hold": {"wait": {"signal": "go"}}}, name="only-a-wait")
    result = repo.submissions.submit_run(tenant="t", spec=wf)
    assert result.status == "running"
    run = repo.runs.get_run(result.run_id)
    assert run.status == "running" and run.started_at is not None
    repo.signals.send_signal(result.run_id, "go", tenant="t")
    types = [r["type"] for r in sql.execute(
        "SELECT type FROM dagq.run_events WHERE run_id = %s AND node_key IS NULL ORDER BY id",
        (result.run_id,)).fetchall()]
    assert types == ["run_queued", "run_started", "run_succeeded"]


def test_the_sweeper_never_waits_for_a_dependent_another_transaction_holds(
        repo: Store, sql, db_url: str) -> None:
    # A worker completing `c` holds `d` (release) and then wants the run: had the
    # sweeper taken the run and then waited for `d`, the two would deadlock.
    wf = spec({"t": {"wait": {"seconds": 0}}, "c": {"executor": "builtin.noop"},
               "d": {"executor": "builtin.noop", "depends_on": ["t", "c"]}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    sql.execute("UPDATE dagq.node_tasks SET wait_until = now() - interval '1 s' "
                "WHERE run_id = %s AND node_key = 't'", (run_id,))
    with psycopg.connect(db_url, row_factory=dict_row) as holder:
        holder.execute("SELECT id FROM dagq.node_tasks WHERE run_id = %s AND node_key = 'd' "
                       "FOR UPDATE", (run_id,))
        started = time.monotonic()
        Sweeper(repo, Settings()).waits()  # returns at once: that wait is busy
        assert time.monotonic() - started < 2.0
        holder.execute("SELECT id FROM dagq.runs WHERE id = %s FOR NO KEY UPDATE", (run_id,))
        holder.rollback()  # the run was never held by the sweeper: no deadlock
    statuses = {r["node_key"]: r["status"] for r in sql.execute(
        "SELECT node_key, status FROM dagq.node_tasks WHERE run_id = %s", (run_id,))}
    assert statuses["t"] == "waiting"  # fired on a later pass
    Sweeper(repo, Settings()).waits()
    assert sql.execute("SELECT status FROM dagq.node_tasks WHERE run_id = %s AND "
                       "node_key = 't'", (run_id,)).fetchone()["status"] == "succeeded"


def test_a_buffered_signal_is_not_taken_by_a_node_cancelled_meanwhile(repo: Store,
                                                                      sql) -> None:
    wf = spec({"p": {"executor": "builtin.echo"},
               "w1": {"wait": {"until_path": {"dep": "p", "path": "at"}}, "depends_on": ["p"]},
               "w2": {"wait": {"signal": "go"}, "depends_on": ["p"]}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf, inputs={}).run_id
    repo.signals.send_signal(run_id, "go", tenant="t", data={"x": 1})  # buffered
    [node] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    complete(repo, node.id, node.version, {"at": "not a time"})  # w1 fails, w2 cancelled
    assert {n.key: n.status for n in repo.runs.get_run(run_id).nodes}["w2"] == "cancelled"
    row = sql.execute("SELECT consumed_by FROM dagq.signals WHERE run_id = %s",
                      (run_id,)).fetchone()
    assert row["consumed_by"] is None  # still there for a later wait (a retry)
    events = [r["type"] for r in sql.execute(
        "SELECT type FROM dagq.run_events WHERE run_id = %s AND node_key = 'w2' ORDER BY id",
        (run_id,))]
    assert "signal_received" not in events


def test_signals_lock_wait_nodes_in_the_order_releases_do(repo: Store, sql,
                                                         db_url: str) -> None:
    wf = spec({"d": {"executor": "builtin.noop"},
               "z_wait": {"wait": {"signal": "s"}, "depends_on": ["d"]},
               "x": {"executor": "builtin.noop", "depends_on": ["d"]},
               "a_wait": {"wait": {"signal": "s"}, "depends_on": ["d", "x"]}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    ids = {r["node_key"]: r["id"] for r in sql.execute(
        "SELECT node_key, id FROM dagq.node_tasks WHERE run_id = %s", (run_id,))}
    [node] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    outcome: dict[str, object] = {}

    def completion() -> None:
        try:
            outcome["ok"] = complete(repo, node.id, node.version, {})
        except Exception as exc:  # noqa: BLE001 - the test reports it
            outcome["error"] = exc

    # A signal's transaction locks its waiters as release does (key order): holding
    # the first in that order, then taking the second, never deadlocks a completion.
    first, second = sorted(["z_wait", "a_wait"])
    with psycopg.connect(db_url) as signal_like:
        signal_like.execute("SELECT 1 FROM dagq.node_tasks WHERE id = %s FOR NO KEY UPDATE",
                            (ids[first],))
        thread = threading.Thread(target=completion)
        thread.start()
        time.sleep(0.5)
        signal_like.execute("SELECT 1 FROM dagq.node_tasks WHERE id = %s FOR NO KEY UPDATE",
                            (ids[second],))
        signal_like.rollback()
    thread.join(30)
    assert outcome.get("ok") is True, outcome


def test_the_api_group_commit_starts_root_waits_too(db_url: str) -> None:
    from tests.harness.api import Api

    flow = {"name": "hold", "nodes": {"hold": {"wait": {"signal": "go", "timeout_s": 60}},
                                      "after": {"executor": "builtin.noop",
                                                "depends_on": ["hold"]}}}
    with Api(db_url) as api:
        created = api.submit(api.acme, workflow=flow)
        assert created["status"] == "running"
        run = api.client.get(f"/v1/runs/{created['run_id']}", headers=api.acme).json()
        hold = next(n for n in run["nodes"] if n["key"] == "hold")
        assert run["status"] == "running" and run["started_at"] is not None
        assert hold["status"] == "waiting" and hold["wait_until"] is not None
        sent = api.client.post(f"/v1/runs/{created['run_id']}/signals/go", json={},
                               headers=api.acme)
        assert sent.status_code == 202 and sent.json()["delivered"] is True
