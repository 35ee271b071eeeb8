"""Dramatiq workers on Postgres, as real processes (issue 3)."""

from __future__ import annotations

import time

import pytest

from dagq.store import Store
from tests.harness.procs import wait_for, wait_for_run
from tests.harness.specs import diamond, spec

pytestmark = pytest.mark.e2e


def node_events(sql, run_id, node_key=None):
    rows = sql.execute(
        "SELECT node_key, type, attempt, data FROM dagq.run_events WHERE run_id = %s "
        "ORDER BY id", (run_id,)).fetchall()
    return [r for r in rows if node_key is None or r["node_key"] == node_key]


def test_diamond_and_fan_out_run_on_real_workers(repo: Store, fleet, sql) -> None:
    fleet.start(threads=4)
    fleet.start(threads=4)
    diamond_id = repo.submissions.submit_run(tenant="t", spec=diamond(), inputs={"q": "x"}).run_id
    nodes = {"root": {"executor": "builtin.noop"}}
    nodes |= {f"m{i}": {"executor": "test.ident", "depends_on": ["root"], "params": {"i": i}}
              for i in range(50)}
    nodes["agg"] = {"executor": "test.collect", "depends_on": [f"m{i}" for i in range(50)]}
    fan_id = repo.submissions.submit_run(tenant="t", spec=spec(nodes, name="fan")).run_id

    run = wait_for_run(repo, diamond_id)
    assert run.status == "succeeded", fleet.logs()
    by_key = {n.key: n for n in run.nodes}
    assert by_key["d"].started_at >= max(by_key["b"].finished_at, by_key["c"].finished_at)
    assert by_key["b"].outputs["run"] == {"q": "x"}

    fan = wait_for_run(repo, fan_id)
    assert fan.status == "succeeded"
    agg = next(n for n in fan.nodes if n.key == "agg")
    assert agg.outputs == {"n": 50, "keys": sorted(f"m{i}" for i in range(50))}
    assert fan.outputs == {"agg": agg.outputs}


def test_a_completion_hands_the_next_level_to_its_own_worker(repo, fleet, sql) -> None:
    """The root's completion leases the middles in its own transaction (same clock, same
    worker); the last middle's completion leases the aggregate."""
    fleet.start(threads=4)
    nodes = {"root": {"executor": "builtin.noop"}}
    nodes |= {f"m{i}": {"executor": "builtin.noop", "depends_on": ["root"]} for i in range(5)}
    nodes["agg"] = {"executor": "builtin.merge", "depends_on": [f"m{i}" for i in range(5)]}
    run = wait_for_run(repo, repo.submissions.submit_run(
        tenant="t", spec=spec(nodes, name="hand")).run_id)
    assert run.status == "succeeded", fleet.logs()
    by_key = {n.key: n for n in run.nodes}
    middles = [by_key[f"m{i}"] for i in range(5)]
    assert all(m.started_at == by_key["root"].finished_at for m in middles)
    assert by_key["agg"].started_at == max(m.finished_at for m in middles)
    started = [e for e in node_events(sql, run.run_id) if e["type"] == "node_started"]
    assert len(started) == 7 and len({e["data"]["worker"] for e in started}) == 1


def test_retries_until_success_with_node_retry_events(repo, fleet, sql) -> None:
    fleet.start()
    wf = spec({"a": {"executor": "builtin.fail", "params": {"times": 2},
                     "backoff": {"initial_s": 0.05, "max_s": 0.1}}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    run = wait_for_run(repo, run_id)
    assert run.status == "succeeded"
    assert run.nodes[0].attempts == 3 and run.nodes[0].outputs == {"attempt": 3}
    retries = [e for e in node_events(sql, run_id, "a") if e["type"] == "node_retry"]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert retries[0]["data"]["error"]["type"] == "RuntimeError"
    assert "Traceback" in retries[0]["data"]["error"]["traceback"]


def test_fatal_error_fails_at_once(repo, fleet, sql) -> None:
    fleet.start()
    wf = spec({"a": {"executor": "builtin.fail", "params": {"fatal": True}, "max_attempts": 5}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    run = wait_for_run(repo, run_id)
    assert run.status == "failed"
    assert run.nodes[0].attempts == 1
    assert run.nodes[0].error["type"] == "FatalError"
    types = [e["type"] for e in node_events(sql, run_id, "a")]
    assert "node_retry" not in types and types[-1] == "node_failed"


def test_user_fatal_error_and_bad_output(repo, fleet) -> None:
    fleet.start()
    wf = spec({"f": {"executor": "test.fatal", "max_attempts": 3},
               "j": {"executor": "test.not_json", "max_attempts": 3}}, fail_fast=False)
    run = wait_for_run(repo, repo.submissions.submit_run(tenant="t", spec=wf).run_id)
    errors = {n.key: (n.attempts, n.error["type"]) for n in run.nodes}
    assert errors == {"f": (1, "FatalError"), "j": (1, "OutputError")}
    assert "not JSON" in next(n for n in run.nodes if n.key == "j").error["message"]


def test_timeout_fails_the_attempt(repo, fleet) -> None:
    fleet.start()
    wf = spec({"s": {"executor": "builtin.sleep", "params": {"seconds": 5}, "timeout_s": 1,
                     "max_attempts": 1}})
    started = time.monotonic()
    run = wait_for_run(repo, repo.submissions.submit_run(tenant="t", spec=wf).run_id, timeout=20)
    assert run.status == "failed"
    assert run.nodes[0].error["type"] == "Timeout"
    assert time.monotonic() - started < 4.5  # stopped at ~1 s, not after the 5 s sleep


def test_sigterm_hands_prefetched_tasks_back_at_once(repo, fleet, sql) -> None:
    first = fleet.start(threads=1)  # 1 thread: prefetch 2, so one waits in memory
    wf = spec({f"s{i}": {"executor": "builtin.sleep", "params": {"seconds": 2}}
               for i in range(4)})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    wait_for(lambda: sql.execute(
        "SELECT count(*) AS n FROM dagq.node_tasks WHERE status = 'running'"
    ).fetchone()["n"] == 2, 15, "the worker to lease two nodes")
    leased = {r["node_key"] for r in sql.execute(
        "SELECT node_key FROM dagq.node_tasks WHERE status = 'running'").fetchall()}
    first.send_signal(15)
    # The prefetched (never started) lease is back in the queue well before the running
    # node's 2 s sleep ends, with no attempt spent.
    requeued = wait_for(lambda: sql.execute(
        "SELECT node_key FROM dagq.run_events WHERE run_id = %s AND type = 'node_queued' "
        "AND data->>'reason' = 'worker_shutdown'", (run_id,)).fetchall(), 1.5,
        "the prefetched node to be requeued")
    requeued_key = requeued[0]["node_key"]
    assert requeued_key in leased
    assert first.wait(30) == 0
    fleet.start(threads=4)
    run = wait_for_run(repo, run_id, timeout=30)
    assert run.status == "succeeded"
    node = next(n for n in run.nodes if n.key == requeued_key)
    assert node.attempts == 1 and node.status == "succeeded"


def test_two_processes_execute_every_node_exactly_once(repo, fleet, sql) -> None:
    fleet.start(threads=8)
    fleet.start(threads=8)
    wf = spec({f"n{i}": {"executor": "builtin.noop"} for i in range(100)}, name="wide")
    run_ids = [repo.submissions.submit_run(tenant="t", spec=wf).run_id for _ in range(20)]
    for run_id in run_ids:
        assert wait_for_run(repo, run_id, timeout=120).status == "succeeded"
    counts = sql.execute("""
        SELECT count(*) AS nodes,
               count(*) FILTER (WHERE starts = 1) AS once,
               count(DISTINCT worker) AS workers
        FROM (SELECT t.id, count(e.id) AS starts, min(e.data->>'worker') AS worker
              FROM dagq.node_tasks t
              JOIN dagq.run_events e ON e.run_id = t.run_id AND e.node_key = t.node_key
                                    AND e.type = 'node_started'
              GROUP BY t.id) s
    """).fetchone()
    assert counts["nodes"] == 2000 and counts["once"] == 2000
    assert counts["workers"] == 2  # both processes took part


def test_cancel_interrupts_a_running_node_at_its_heartbeat(repo, fleet, sql) -> None:
    fleet.start()
    wf = spec({"long": {"executor": "builtin.sleep", "params": {"seconds": 30}},
               "after": {"executor": "builtin.noop", "depends_on": ["long"]}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    wait_for(lambda: repo.runs.get_run(run_id).nodes[0].status == "running", 15, "the lease")
    repo.runs.cancel_run(run_id, "t")
    wait_for(lambda: repo.runs.get_run(run_id).nodes[0].status == "cancelled", 5,
             "the running node to stop at its next heartbeat")
    run = repo.runs.get_run(run_id)
    assert run.status == "cancelled"
    assert {n.key: n.status for n in run.nodes} == {"long": "cancelled", "after": "cancelled"}


def test_plain_dramatiq_send_becomes_a_one_node_run(repo, fleet, db_url) -> None:
    import dramatiq

    from dagq.workers.broker import PostgresBroker

    fleet.start()
    broker = PostgresBroker(repo, worker_id="sender", lease_ttl_s=30, max_output_bytes=1000)
    dramatiq.set_broker(broker)  # before the actor module is imported, as in production
    import importlib
    import sys

    sys.modules.pop("tests.e2e.sample_executors", None)  # declare its actor on this broker
    module = importlib.import_module("tests.e2e.sample_executors")
    message = module.add.send(2, 3)
    run = repo.runs.list_runs(tenant=None, workflow="add")[0]
    assert run.event_key == message.message_id
    finished = wait_for_run(repo, run.run_id)
    assert finished.status == "succeeded"
    assert finished.nodes[0].outputs == {"result": 5}
    assert finished.nodes[0].max_attempts == 2  # max_retries=1 -> two attempts
    again = module.add.send_with_options(args=(1, 1))
    assert again.message_id != message.message_id


def test_concurrency_cap_holds_across_processes_while_others_flow(repo, fleet, sql) -> None:
    fleet.start(threads=8)
    fleet.start(threads=8)
    capped = repo.submissions.submit_run(tenant="t", spec=spec(
        {f"c{i}": {"executor": "test.capped"} for i in range(200)}, name="capped")).run_id
    free = repo.submissions.submit_run(tenant="t", spec=spec(
        {f"f{i}": {"executor": "builtin.noop"} for i in range(200)}, name="free")).run_id
    samples = []
    free_done_at = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        row = sql.execute("""
            SELECT count(*) FILTER (WHERE executor = 'test.capped' AND status = 'running')
                       AS capped_running,
                   count(*) FILTER (WHERE executor = 'builtin.noop' AND status = 'succeeded')
                       AS free_done,
                   count(*) FILTER (WHERE executor = 'test.capped' AND status = 'succeeded')
                       AS capped_done
            FROM dagq.node_tasks""").fetchone()
        samples.append(row["capped_running"])
        if row["free_done"] == 200 and free_done_at is None:
            free_done_at = row["capped_done"]
        if row["capped_done"] == 200:
            break
        time.sleep(0.02)
    assert max(samples) <= 3 and max(samples) == 3, samples
    assert len(samples) > 20
    # The uncapped executor was not stuck behind the capped backlog.
    assert free_done_at is not None and free_done_at < 150
    assert wait_for_run(repo, capped).status == "succeeded"
    assert wait_for_run(repo, free).status == "succeeded"
