"""Durable waits (issue 16) through the store on a real Postgres: wait nodes, signals
(after and before the wait, at once, duplicated), timers and timeouts fired by the
sweeper (time through data: wait_until backdated), cancel, deadline, fail_fast, `if`
and retry of runs with waiting nodes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from dagq.config import Settings
from dagq.errors import Conflict, InvalidRequest, NotFound
from dagq.store import Store
from dagq.sweeper.passes import Sweeper
from tests.harness.drive import complete, drive
from tests.harness.specs import spec

ECHO = {"builtin.echo": lambda payload: payload}


@pytest.fixture
def sweeper(repo: Store) -> Sweeper:
    return Sweeper(repo, Settings(worker_dead_after_s=30, retention_days=7))


def approval(**wait) -> object:
    """draft -> approve (wait) -> send (if approved) / discard (if not)."""
    return spec({
        "draft": {"executor": "builtin.echo", "params": {"text": "refund 20 EUR"}},
        "approve": {"wait": {"signal": "approval", **wait}, "depends_on": ["draft"]},
        "send": {"executor": "builtin.echo", "depends_on": ["approve"],
                 "if": {"dep": "approve", "path": "data.approved", "in": [True]}},
        "discard": {"executor": "builtin.noop", "depends_on": ["approve"],
                    "if": {"dep": "approve", "path": "data.approved", "in": [False]}},
    }, name="approval")


def statuses(repo: Store, run_id) -> dict[str, str]:
    return {n.key: n.status for n in repo.runs.get_run(run_id).nodes}


def types(sql, run_id, node_key=None) -> list[str]:
    rows = sql.execute(
        "SELECT type FROM dagq.run_events WHERE run_id = %s AND node_key IS NOT DISTINCT "
        "FROM %s ORDER BY id", (run_id, node_key)).fetchall()
    return [r["type"] for r in rows]


def backdate(sql, run_id, key: str = "approve") -> None:
    sql.execute("UPDATE dagq.node_tasks SET wait_until = now() - interval '1 second' "
                "WHERE run_id = %s AND node_key = %s", (run_id, key))


def test_signal_after_the_node_waits_ends_the_wait_and_the_if_follows(repo, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=approval()).run_id
    assert drive(repo) == ["draft"]
    run = repo.runs.get_run(run_id)
    approve = next(n for n in run.nodes if n.key == "approve")
    assert (run.status, approve.status) == ("running", "waiting")
    assert approve.wait == {"signal": "approval"} and approve.wait_until is None
    assert approve.lease_owner is None and approve.attempts == 0
    assert repo.leases.lease(worker="w", queue="default", limit=10, ttl_s=30) == []
    result = repo.signals.send_signal(run_id, "approval", tenant="t", data={"approved": True},
                                      signal_id="mail-1")
    assert (result.delivered, result.node_key, result.duplicate) == (True, "approve", False)
    approve = next(n for n in repo.runs.get_run(run_id).nodes if n.key == "approve")
    assert approve.outputs == {"signal": "approval", "signal_id": "mail-1",
                               "data": {"approved": True}}
    assert drive(repo) == ["send"]
    assert statuses(repo, run_id) == {"draft": "succeeded", "approve": "succeeded",
                                      "send": "succeeded", "discard": "skipped"}
    assert repo.runs.get_run(run_id).status == "succeeded"
    assert types(sql, run_id, "approve") == [
        "node_waiting", "signal_received", "node_succeeded"]


def test_a_rejection_takes_the_other_branch(repo) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=approval()).run_id
    drive(repo)
    repo.signals.send_signal(run_id, "approval", tenant="t", data={"approved": False})
    assert drive(repo) == ["discard"]
    assert statuses(repo, run_id)["send"] == "skipped"
    assert repo.runs.get_run(run_id).status == "succeeded"


def test_a_signal_before_the_wait_is_buffered_and_taken_when_it_waits(repo, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=approval()).run_id
    early = repo.signals.send_signal(run_id, "approval", tenant="t", data={"approved": True})
    assert (early.delivered, early.node_key) == (False, None)
    assert statuses(repo, run_id)["approve"] == "pending"
    assert drive(repo) == ["draft", "send"]  # the wait took the buffered signal at once
    assert repo.runs.get_run(run_id).status == "succeeded"
    assert types(sql, run_id, None).count("signal_received") == 1  # buffered (run level)
    assert types(sql, run_id, "approve") == [
        "node_waiting", "signal_received", "node_succeeded"]
    row = sql.execute("SELECT consumed_by FROM dagq.signals WHERE run_id = %s",
                      (run_id,)).fetchone()
    assert row["consumed_by"] == "approve"


def test_a_root_wait_node_waits_from_submit(repo, sql) -> None:
    wf = spec({"hold": {"wait": {"signal": "go"}},
               "after": {"executor": "builtin.noop", "depends_on": ["hold"]}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    assert statuses(repo, run_id) == {"hold": "waiting", "after": "pending"}
    assert types(sql, run_id, "hold") == ["node_waiting"]
    assert repo.signals.send_signal(run_id, "go", tenant="t").delivered
    assert drive(repo) == ["after"]
    assert repo.runs.get_run(run_id).status == "succeeded"


def test_two_signals_at_once_one_wins_the_other_stays_buffered(repo, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=approval()).run_id
    drive(repo)
    barrier = threading.Barrier(2)

    def send(i: int):
        barrier.wait()
        return repo.signals.send_signal(run_id, "approval", tenant="t", data={"approved": True,
                                                                       "i": i})

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(send, [1, 2]))
    assert sorted(r.delivered for r in results) == [False, True]
    rows = sql.execute("SELECT consumed_by FROM dagq.signals WHERE run_id = %s ORDER BY id",
                       (run_id,)).fetchall()
    assert sorted(str(r["consumed_by"]) for r in rows) == ["None", "approve"]
    assert types(sql, run_id, "approve").count("node_succeeded") == 1


def test_the_same_signal_id_again_is_a_no_op(repo, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=approval()).run_id
    first = repo.signals.send_signal(run_id, "approval", tenant="t", signal_id="hook-7",
                                     data={"approved": True})
    again = repo.signals.send_signal(run_id, "approval", tenant="t", signal_id="hook-7",
                                     data={"approved": False})
    assert (first.duplicate, again.duplicate, again.delivered) == (False, True, False)
    assert sql.execute("SELECT count(*) AS n FROM dagq.signals").fetchone()["n"] == 1
    drive(repo)
    assert repo.signals.send_signal(run_id, "approval", tenant="t", signal_id="hook-7").delivered
    with pytest.raises(InvalidRequest, match="waits for signal 'other'"):
        repo.signals.send_signal(run_id, "other", tenant="t", signal_id="hook-7")
    assert repo.runs.get_run(run_id).status == "succeeded"
    # Retried after the run finished: still the same no-op, not a conflict.
    assert repo.signals.send_signal(run_id, "approval", tenant="t", signal_id="hook-7").duplicate


def test_a_signal_id_is_one_signal_of_one_name(repo) -> None:
    wf = spec({"a": {"wait": {"signal": "a"}}, "b": {"wait": {"signal": "b"}}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    assert repo.signals.send_signal(run_id, "a", tenant="t", signal_id="x").node_key == "a"
    with pytest.raises(Conflict, match="already used for signal 'a'"):
        repo.signals.send_signal(run_id, "b", tenant="t", signal_id="x")
    assert statuses(repo, run_id) == {"a": "succeeded", "b": "waiting"}


def test_signals_to_finished_unknown_or_foreign_runs_are_refused(repo, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=approval()).run_id
    with pytest.raises(NotFound):
        repo.signals.send_signal(run_id, "approval", tenant="other")
    with pytest.raises(InvalidRequest, match="no node of run .* waits for signal 'aproval'"):
        repo.signals.send_signal(run_id, "aproval", tenant="t")
    repo.runs.cancel_run(run_id, "t")
    with pytest.raises(Conflict, match="already finished"):
        repo.signals.send_signal(run_id, "approval", tenant="t")
    assert sql.execute("SELECT count(*) AS n FROM dagq.signals").fetchone()["n"] == 0


@pytest.mark.parametrize(("on_timeout", "approve", "run_status"), [
    ("fail", "failed", "failed"), ("skip", "skipped", "succeeded"),
    ("succeed", "succeeded", "succeeded"), ("fail-partial", "failed", "partial_succeeded")])
def test_a_signal_wait_times_out_per_on_timeout(repo, sweeper, sql, on_timeout, approve,
                                                run_status) -> None:
    wf = approval(timeout_s=3600, on_timeout=on_timeout.split("-")[0])
    if on_timeout == "fail-partial":  # fail_fast off: the rest is skipped, the run partial
        wf = wf.model_copy(update={"fail_fast": False})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    drive(repo)
    node = next(n for n in repo.runs.get_run(run_id).nodes if n.key == "approve")
    assert node.wait_until is not None
    assert sweeper.waits() == {"fired": 0, "timed_out": 0}  # not due yet
    backdate(sql, run_id)
    assert sweeper.waits() == {"fired": 0, "timed_out": 1}
    assert sweeper.waits() == {"fired": 0, "timed_out": 0}  # fired once
    drive(repo)
    run = repo.runs.get_run(run_id)
    assert statuses(repo, run_id)["approve"] == approve
    assert run.status == run_status
    node = next(n for n in run.nodes if n.key == "approve")
    if on_timeout.startswith("fail"):
        assert node.error["type"] == "WaitTimeout"
        assert statuses(repo, run_id)["send"] == (
            "cancelled" if on_timeout == "fail" else "skipped")
    if on_timeout == "succeed":
        assert node.outputs == {"timed_out": True}
        assert statuses(repo, run_id) == {"draft": "succeeded", "approve": "succeeded",
                                          "send": "skipped", "discard": "skipped"}


def test_timers_fire_from_the_sweeper(repo, sweeper, sql) -> None:
    wf = spec({
        "plan": {"executor": "builtin.echo", "params": {"retry_at": "2020-01-01T09:00:00Z"}},
        "sleep": {"wait": {"seconds": 300}, "depends_on": ["plan"]},
        "until": {"wait": {"until": "2099-12-24T09:00:00Z"}, "depends_on": ["plan"]},
        "at": {"wait": {"until_path": {"dep": "plan", "path": "params.retry_at"}},
               "depends_on": ["plan"]},
        "done": {"executor": "builtin.noop", "depends_on": ["sleep", "until", "at"]},
    })
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    drive(repo, ECHO)
    nodes = {n.key: n for n in repo.runs.get_run(run_id).nodes}
    assert {k: n.status for k, n in nodes.items()} == {
        "plan": "succeeded", "sleep": "waiting", "until": "waiting", "at": "waiting",
        "done": "pending"}
    assert nodes["until"].wait_until.isoformat() == "2099-12-24T09:00:00+00:00"
    assert 290 < (nodes["sleep"].wait_until - nodes["sleep"].started_at).total_seconds() <= 300
    assert sweeper.waits() == {"fired": 1, "timed_out": 0}  # `at` was already due
    backdate(sql, run_id, "sleep")
    backdate(sql, run_id, "until")
    assert sweeper.waits() == {"fired": 2, "timed_out": 0}
    assert drive(repo) == ["done"]
    run = repo.runs.get_run(run_id)
    assert run.status == "succeeded"
    at = next(n for n in run.nodes if n.key == "at")
    assert at.outputs == {"until": "2020-01-01T09:00:00+00:00"}


def test_a_bad_until_path_value_fails_the_node(repo) -> None:
    wf = spec({"plan": {"executor": "builtin.echo", "params": {"retry_at": "tomorrow"}},
               "at": {"wait": {"until_path": {"dep": "plan", "path": "params.retry_at"}},
                      "depends_on": ["plan"]}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    drive(repo, ECHO)
    run = repo.runs.get_run(run_id)
    at = next(n for n in run.nodes if n.key == "at")
    assert (run.status, at.status, at.error["type"]) == ("failed", "failed", "WaitError")
    assert "'tomorrow'" in at.error["message"]


def test_cancel_while_waiting(repo, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=approval(timeout_s=60)).run_id
    drive(repo)
    repo.runs.cancel_run(run_id, "t")
    run = repo.runs.get_run(run_id)
    assert run.status == "cancelled" and run.nodes_remaining == 0
    assert statuses(repo, run_id)["approve"] == "cancelled"
    assert "node_cancelled" in types(sql, run_id, "approve")


def test_deadline_while_waiting(repo, sweeper, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=approval(), deadline_s=60).run_id
    drive(repo)
    sql.execute("UPDATE dagq.runs SET deadline_at = now() - interval '1 second' WHERE id = %s",
                (run_id,))
    assert sweeper.deadlines() == {"expired_runs": 1}
    run = repo.runs.get_run(run_id)
    assert run.status == "failed" and run.error["type"] == "DeadlineExceeded"
    assert statuses(repo, run_id)["approve"] == "cancelled"


def test_fail_fast_cancels_a_waiting_node(repo) -> None:
    wf = spec({"hold": {"wait": {"signal": "go"}},
               "boom": {"executor": "builtin.fail", "params": {"fatal": True},
                        "max_attempts": 1}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id

    def fail(payload):
        raise RuntimeError("boom")

    drive(repo, {"boom": fail})
    assert repo.runs.get_run(run_id).status == "failed"
    assert statuses(repo, run_id) == {"hold": "cancelled", "boom": "failed"}


def test_a_wait_whose_if_does_not_hold_is_skipped(repo) -> None:
    wf = spec({"route": {"executor": "builtin.echo", "params": {"to": "a"}},
               "hold": {"wait": {"signal": "go"}, "depends_on": ["route"],
                        "if": {"dep": "route", "path": "params.to", "in": ["b"]}}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    drive(repo)
    assert statuses(repo, run_id)["hold"] == "skipped"
    assert repo.runs.get_run(run_id).status == "succeeded"


def test_retry_of_a_run_whose_wait_timed_out_waits_again(repo, sweeper, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=approval(timeout_s=60)).run_id
    drive(repo)
    backdate(sql, run_id)
    sweeper.waits()
    assert repo.runs.get_run(run_id).status == "failed"
    assert repo.runs.retry_run(run_id, "t") == "running"
    run = repo.runs.get_run(run_id)
    approve = next(n for n in run.nodes if n.key == "approve")
    assert approve.status == "waiting" and approve.wait_until > approve.started_at
    assert repo.signals.send_signal(run_id, "approval", tenant="t",
                                    data={"approved": True}).delivered
    assert drive(repo) == ["send"]
    assert repo.runs.get_run(run_id).status == "succeeded"


def test_retry_of_a_root_wait_takes_a_signal_buffered_meanwhile(repo, sweeper, sql) -> None:
    wf = spec({"hold": {"wait": {"signal": "go", "timeout_s": 60}}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    backdate(sql, run_id, "hold")
    sweeper.waits()
    assert repo.runs.get_run(run_id).status == "failed"
    repo.runs.retry_run(run_id, "t")
    assert statuses(repo, run_id) == {"hold": "waiting"}
    assert repo.signals.send_signal(run_id, "go", tenant="t").delivered
    assert repo.runs.get_run(run_id).status == "succeeded"


def test_two_sweepers_fire_each_wait_once(repo, sql) -> None:
    wf = spec({"t": {"wait": {"seconds": 60}}})
    run_ids = [repo.submissions.submit_run(tenant="t", spec=wf).run_id for _ in range(30)]
    sql.execute("UPDATE dagq.node_tasks SET wait_until = now() - interval '1 second'")
    sweepers = [Sweeper(repo, Settings()) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        counts = list(pool.map(lambda s: s.waits(), sweepers))
    assert sum(c["fired"] for c in counts) == 30
    assert all(repo.runs.get_run(r).status == "succeeded" for r in run_ids)
    fired = sql.execute("SELECT count(*) AS n FROM dagq.run_events "
                        "WHERE type = 'node_succeeded'").fetchone()["n"]
    assert fired == 30


def test_waiting_nodes_view(repo, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=approval(timeout_s=600)).run_id
    drive(repo)
    [row] = sql.execute("SELECT * FROM dagq.waiting_nodes").fetchall()
    assert (row["run_id"], row["node_key"], row["waits_for"], row["signal"],
            row["on_timeout"], row["buffered_signals"]) == (
        run_id, "approve", "signal", "approval", "fail", 0)
    assert row["times_out_at"] > row["waiting_since"]
    summary = sql.execute("SELECT waiting, succeeded, pending FROM dagq.run_summary "
                          "WHERE id = %s", (run_id,)).fetchone()
    assert (summary["waiting"], summary["succeeded"], summary["pending"]) == (1, 1, 2)


def test_waiting_rows_stay_out_of_the_dequeue_index(repo, sql) -> None:
    wf = spec({"hold": {"wait": {"signal": "go"}}})
    for _ in range(200):
        repo.submissions.submit_run(tenant="t", spec=wf)
    sql.execute("ANALYZE dagq.node_tasks")
    plan = "\n".join(r["QUERY PLAN"] for r in sql.execute(
        "EXPLAIN SELECT id FROM dagq.node_tasks WHERE status = 'queued' AND queue = 'default' "
        "AND available_at <= now() ORDER BY priority DESC, available_at, id LIMIT 32"
    ).fetchall())
    assert "node_tasks_dequeue" in plan
    indexed = sql.execute(
        "SELECT count(*) AS n FROM dagq.node_tasks WHERE status = 'queued'").fetchone()["n"]
    assert indexed == 0


def test_requeue_node_refuses_a_run_whose_wait_did_not_succeed(repo, sweeper, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=approval(timeout_s=60)).run_id
    drive(repo)
    backdate(sql, run_id)
    sweeper.waits()
    with pytest.raises(psycopg.errors.RaiseException, match="wait nodes that did not"):
        sql.execute("SELECT dagq.requeue_node(%s, 'approve')", (run_id,))
    assert statuses(repo, run_id)["approve"] == "failed"


def test_a_signal_racing_the_node_into_its_wait_is_never_missed(repo, sql) -> None:
    """Upstream completions (moving `approve` to waiting) and signals, all at once: every
    signal ends up in its run's wait, whichever transaction commits first."""
    wf = spec({"draft": {"executor": "builtin.noop"},
               "approve": {"wait": {"signal": "approval"}, "depends_on": ["draft"]}})
    run_ids = [repo.submissions.submit_run(tenant="t", spec=wf).run_id for _ in range(40)]
    leased = repo.leases.lease(worker="w", queue="default", limit=40, ttl_s=30)
    assert len(leased) == 40
    barrier = threading.Barrier(8)

    def complete_draft(node) -> None:
        barrier.wait()
        complete(repo, node.id, node.version, {})

    def signal(run_id) -> None:
        barrier.wait()
        repo.signals.send_signal(run_id, "approval", tenant="t", data={"approved": True})

    with ThreadPoolExecutor(8) as pool:
        jobs = []
        for node, run_id in zip(sorted(leased, key=lambda n: n.run_id),
                                sorted(run_ids), strict=True):
            jobs += [pool.submit(complete_draft, node), pool.submit(signal, run_id)]
        for job in jobs:
            job.result()
    assert {repo.runs.get_run(r).status for r in run_ids} == {"succeeded"}
    left = sql.execute("SELECT count(*) AS n FROM dagq.signals WHERE consumed_at IS NULL")
    assert left.fetchone()["n"] == 0
