"""The psql views and dagq.requeue_node (migration 003), on a real Postgres.

Time moves through data: leases, heartbeats and durations are backdated with SQL.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from dagq.models import ExecutorInfo
from dagq.store import Store
from tests.harness.drive import complete, drive
from tests.harness.specs import spec


def boom(payload):
    raise RuntimeError("boom")


def merge(payload):
    return payload["deps"]


def register(repo: Store, worker: str, queues: list[str] | None = None) -> None:
    repo.fleet.register_worker(worker=worker, hostname="host-1", pid=4242,
                               queues=queues or ["default"], threads=4,
                               executors=[ExecutorInfo(name="builtin.echo", queue="default")])


def one(sql, query: str, *params):
    rows = sql.execute(query, params).fetchall()
    assert len(rows) == 1, rows
    return rows[0]


def requeue(sql, run_id: uuid.UUID, node: str) -> str:
    return sql.execute("SELECT dagq.requeue_node(%s, %s) AS msg", (run_id, node)).fetchone()["msg"]


def node_states(sql, run_id: uuid.UUID) -> dict[str, tuple[str, int]]:
    rows = sql.execute(
        "SELECT node_key, status, deps_remaining FROM dagq.node_tasks "
        "WHERE run_id = %s AND parent_id IS NULL", (run_id,)).fetchall()
    return {r["node_key"]: (r["status"], r["deps_remaining"]) for r in rows}


# ===== running_nodes, stuck_nodes, worker_status ======================================


def test_running_node_becomes_stuck_only_when_its_lease_expired(repo: Store, sql) -> None:
    register(repo, "w1")
    run_id = repo.submissions.submit_run(
        tenant="t", spec=spec({"a": {"executor": "builtin.echo"}})).run_id
    repo.leases.lease(worker="w1", queue="default", limit=1, ttl_s=30)

    running = one(sql, "SELECT * FROM dagq.running_nodes")
    assert (running["run_id"], running["node_key"], running["lease_owner"]) == (run_id, "a", "w1")
    assert (running["attempts"], running["max_attempts"]) == (1, 3)
    assert 25 < running["lease_expires_in_s"] <= 30
    assert running["worker_status"] == "alive"
    assert sql.execute("SELECT * FROM dagq.stuck_nodes").fetchall() == []

    sql.execute("UPDATE dagq.node_tasks SET lease_expires_at = now() - interval '90 seconds', "
                "started_at = now() - interval '2 minutes' WHERE run_id = %s", (run_id,))
    sql.execute("UPDATE dagq.workers SET heartbeat_at = now() - interval '100 seconds'")

    stuck = one(sql, "SELECT * FROM dagq.stuck_nodes")
    assert (stuck["run_id"], stuck["node_key"], stuck["lease_owner"]) == (run_id, "a", "w1")
    assert 90 <= stuck["expired_s_ago"] < 95
    assert stuck["worker_status"] == "alive" and 100 <= stuck["worker_heartbeat_age_s"] < 105
    assert stuck["sweeper_will"] == "retry"
    running = one(sql, "SELECT * FROM dagq.running_nodes")
    assert running["lease_expires_in_s"] < -89 and 120 <= running["running_s"] < 125
    assert 100 <= running["lease_age_s"] < 105  # the last renewal was the last heartbeat

    repo.maintenance.reclaim_expired()
    assert sql.execute("SELECT * FROM dagq.stuck_nodes").fetchall() == []
    assert sql.execute("SELECT * FROM dagq.running_nodes").fetchall() == []


def test_running_nodes_lists_map_items_not_the_waiting_map_node(repo: Store, sql) -> None:
    wf = spec({"src": {"executor": "builtin.echo"},
               "per_doc": {"executor": "builtin.echo", "depends_on": ["src"],
                           "map": {"dep": "src", "path": "docs"}}})
    repo.submissions.submit_run(tenant="t", spec=wf)
    [src] = repo.leases.lease(worker="w1", queue="default", limit=1, ttl_s=30)
    complete(repo, src.id, src.version, {"docs": ["x", "y", "z"]})
    repo.leases.lease(worker="w1", queue="default", limit=1, ttl_s=30)

    rows = sql.execute("SELECT node_key FROM dagq.running_nodes").fetchall()
    assert [r["node_key"] for r in rows] == ["per_doc[0]"]
    depth = one(sql, "SELECT * FROM dagq.queue_depth")
    assert (depth["queued"], depth["delayed"], depth["running"]) == (2, 0, 1)


def test_worker_status_shows_heartbeat_age_and_leases_held(repo: Store, sql) -> None:
    register(repo, "w1")
    register(repo, "w2")
    repo.fleet.stop_worker("w2")
    repo.submissions.submit_run(
        tenant="t", spec=spec({k: {"executor": "builtin.echo"} for k in "abc"}))
    repo.leases.lease(worker="w1", queue="default", limit=2, ttl_s=30)
    sql.execute("UPDATE dagq.workers SET heartbeat_at = now() - interval '42 seconds' "
                "WHERE id = 'w1'")

    rows = sql.execute("SELECT * FROM dagq.worker_status").fetchall()
    assert [(r["id"], r["status"], r["running"]) for r in rows] == [
        ("w1", "alive", 2), ("w2", "stopped", 0)]
    w1 = rows[0]
    assert 42 <= w1["heartbeat_age_s"] < 47 and w1["expired_leases"] == 0
    assert (w1["hostname"], w1["pid"], w1["queues"], w1["threads"]) == (
        "host-1", 4242, ["default"], 4)


# ===== queue_depth ====================================================================


def test_queue_depth_separates_queued_delayed_and_running(repo: Store, sql) -> None:
    register(repo, "w1", queues=["default", "idle"])
    wf = spec({"a": {"executor": "builtin.echo"}, "b": {"executor": "builtin.echo"},
               "c": {"executor": "builtin.echo"}, "d": {"executor": "builtin.echo"},
               "s": {"executor": "builtin.echo", "queue": "slow"}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    repo.leases.lease(worker="w1", queue="default", limit=1, ttl_s=30)  # a
    sql.execute("UPDATE dagq.node_tasks SET available_at = now() + interval '5 minutes' "
                "WHERE run_id = %s AND node_key = 'b'", (run_id,))
    sql.execute("UPDATE dagq.node_tasks SET available_at = now() - interval '60 seconds' "
                "WHERE run_id = %s AND node_key = 'c'", (run_id,))

    rows = {r["queue"]: r for r in sql.execute("SELECT * FROM dagq.queue_depth").fetchall()}
    assert list(rows) == ["default", "idle", "slow"]
    default = rows["default"]
    assert (default["queued"], default["delayed"], default["running"]) == (2, 1, 1)
    assert 60 <= default["oldest_queued_age_s"] < 65
    assert (rows["slow"]["queued"], rows["slow"]["running"]) == (1, 0)
    assert (rows["idle"]["queued"], rows["idle"]["oldest_queued_age_s"]) == (0, 0)


# ===== run_summary ====================================================================


def test_run_summary_counts_a_failed_run(repo: Store, sql) -> None:
    wf = spec({"a": {"executor": "builtin.echo"}, "d": {"executor": "builtin.echo"},
               "b": {"executor": "builtin.echo", "depends_on": ["a"], "max_attempts": 1},
               "c": {"executor": "builtin.echo", "depends_on": ["b"]}}, name="report")
    run_id = repo.submissions.submit_run(tenant="acme", spec=wf).run_id
    ok_id = repo.submissions.submit_run(
        tenant="acme", spec=spec({"x": {"executor": "builtin.noop"}})).run_id
    drive(repo, {"b": boom})

    row = one(sql, "SELECT * FROM dagq.run_summary WHERE id = %s", run_id)
    assert (row["tenant"], row["workflow"], row["status"], row["nodes_total"]) == (
        "acme", "report", "failed", 4)
    counts = {k: row[k] for k in
              ("pending", "queued", "running", "succeeded", "failed", "skipped", "cancelled")}
    assert counts == {"pending": 0, "queued": 0, "running": 0, "succeeded": 2, "failed": 1,
                      "skipped": 0, "cancelled": 1}
    assert row["failed_node"] == "b" and row["error"] == "RuntimeError: boom"
    assert row["finished_at"] is not None and row["duration_s"] >= 0

    newest = sql.execute("SELECT id, status, error FROM dagq.run_summary").fetchall()
    assert [r["id"] for r in newest] == [ok_id, run_id]
    assert newest[0]["status"] == "succeeded" and newest[0]["error"] is None


# ===== node_latency ===================================================================


def test_node_latency_percentiles_over_the_last_hour(repo: Store, sql) -> None:
    nodes = {f"n{i:03d}": {"executor": "builtin.echo"} for i in range(1, 102)}
    nodes["other"] = {"executor": "builtin.noop"}
    run_id = repo.submissions.submit_run(tenant="t", spec=spec(nodes)).run_id
    # n001..n100 ran i seconds after waiting i/10 s; every tenth failed; n101 finished two
    # hours ago (outside the window); `other` never started.
    sql.execute("""
        UPDATE dagq.node_tasks t
        SET status = CASE WHEN i %% 10 = 0 THEN 'failed' ELSE 'succeeded' END,
            finished_at = now() - interval '1 minute',
            started_at = now() - interval '1 minute' - make_interval(secs => i),
            queued_at = now() - interval '1 minute' - make_interval(secs => i * 1.1),
            available_at = now() - interval '1 minute' - make_interval(secs => i * 1.1)
        FROM (SELECT id, substr(node_key, 2)::int AS i FROM dagq.node_tasks
              WHERE run_id = %(run)s AND node_key LIKE 'n%%') n
        WHERE t.id = n.id AND n.i <= 100
    """, {"run": run_id})
    sql.execute("UPDATE dagq.node_tasks SET status = 'succeeded', "
                "finished_at = now() - interval '2 hours', "
                "started_at = now() - interval '3 hours' "
                "WHERE run_id = %s AND node_key = 'n101'", (run_id,))

    row = one(sql, "SELECT * FROM dagq.node_latency")
    assert row["executor"] == "builtin.echo"
    assert (row["finished"], row["succeeded"], row["failed"]) == (100, 90, 10)
    assert (float(row["p50_s"]), float(row["p95_s"]), float(row["p99_s"])) == (
        50.5, 95.05, 99.01)
    assert float(row["max_s"]) == 100
    assert (float(row["wait_p50_s"]), float(row["wait_p95_s"])) == (5.05, 9.505)


def test_node_latency_leaves_out_map_nodes_and_measures_their_items(
    repo: Store, sql
) -> None:
    wf = spec({"src": {"executor": "builtin.noop"},
               "per_doc": {"executor": "builtin.echo", "depends_on": ["src"],
                           "map": {"dep": "src", "path": "docs"}}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    drive(repo, {"src": lambda p: {"docs": [1, 2, 3]}})
    assert repo.runs.get_run(run_id).status == "succeeded"
    rows = {r["executor"]: r for r in sql.execute("SELECT * FROM dagq.node_latency")}
    assert rows["builtin.echo"]["finished"] == 3 and rows["builtin.noop"]["finished"] == 1


# ===== requeue_node ===================================================================


def fail_fast_diamond():
    return spec({"a": {"executor": "builtin.echo"},
                 "b": {"executor": "builtin.echo", "depends_on": ["a"], "max_attempts": 1},
                 "c": {"executor": "builtin.echo", "depends_on": ["a"]},
                 "d": {"executor": "builtin.merge", "depends_on": ["b", "c"]}}, name="dia")


def test_requeue_failed_node_reopens_the_run_and_workers_finish_it(
    repo: Store, sql
) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=fail_fast_diamond()).run_id
    drive(repo, {"b": boom}, batch=1)  # b fails first: c is cancelled while queued, d too
    assert node_states(sql, run_id) == {
        "a": ("succeeded", 0), "b": ("failed", 0), "c": ("cancelled", 0), "d": ("cancelled", 2)}
    last_event = sql.execute("SELECT max(id) AS id FROM dagq.run_events").fetchone()["id"]
    sql.execute("LISTEN dagq_queued")
    sql.execute("LISTEN dagq_events")

    message = requeue(sql, run_id, "b")

    assert message == f"run {run_id} reopened: queued b, c; reset to pending: d"
    assert node_states(sql, run_id) == {
        "a": ("succeeded", 0), "b": ("queued", 0), "c": ("queued", 0), "d": ("pending", 2)}
    run = one(sql, "SELECT * FROM dagq.runs WHERE id = %s", run_id)
    assert (run["status"], run["nodes_remaining"], run["nodes_failed"],
            run["nodes_succeeded"]) == ("running", 3, 0, 1)
    assert run["finished_at"] is None and run["error"] is None and run["outputs"] is None
    events = sql.execute("SELECT node_key, type, attempt FROM dagq.run_events "
                         "WHERE id > %s ORDER BY id", (last_event,)).fetchall()
    assert [(e["node_key"], e["type"]) for e in events] == [
        (None, "run_queued"), ("b", "node_queued"), ("c", "node_queued")]
    notes = {(n.channel, n.payload) for n in sql.notifies(timeout=1, stop_after=2)}
    assert notes == {("dagq_queued", "default"), ("dagq_events", str(run_id))}

    assert sorted(drive(repo, {"d": merge})) == ["b", "c", "d"]
    done = repo.runs.get_run(run_id)
    assert done.status == "succeeded"
    assert done.outputs == {"d": {"b": {"key": "b"}, "c": {"key": "c"}}}
    counts = one(sql, "SELECT nodes_remaining, nodes_failed, nodes_succeeded "
                      "FROM dagq.runs WHERE id = %s", run_id)
    assert counts == {"nodes_remaining": 0, "nodes_failed": 0, "nodes_succeeded": 4}


def test_requeue_keeps_branches_below_another_failure_skipped(repo: Store, sql) -> None:
    wf = spec({"a": {"executor": "builtin.echo", "max_attempts": 1},
               "b": {"executor": "builtin.echo", "max_attempts": 1},
               "c": {"executor": "builtin.echo", "depends_on": ["a"]},
               "d": {"executor": "builtin.echo", "depends_on": ["a", "b"]},
               "e": {"executor": "builtin.echo"}}, fail_fast=False)
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    drive(repo, {"a": boom, "b": boom})
    assert repo.runs.get_run(run_id).status == "partial_succeeded"

    message = requeue(sql, run_id, "a")

    assert message == (f"run {run_id} reopened: queued a; reset to pending: c; "
                       "left as they are (downstream of another failed node): d")
    drive(repo)
    run = one(sql, "SELECT status, nodes_remaining, nodes_failed, nodes_succeeded "
                   "FROM dagq.runs WHERE id = %s", run_id)
    assert run == {"status": "partial_succeeded", "nodes_remaining": 0, "nodes_failed": 1,
                   "nodes_succeeded": 3}
    assert node_states(sql, run_id)["d"] == ("skipped", 2)


def test_requeue_a_failed_map_node_expands_it_again(repo: Store, sql) -> None:
    wf = spec({"src": {"executor": "builtin.noop"},
               "per_doc": {"executor": "builtin.echo", "depends_on": ["src"],
                           "max_attempts": 1, "map": {"dep": "src", "path": "docs"}},
               "agg": {"executor": "builtin.merge", "depends_on": ["per_doc"]}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    flaky = {"calls": 0}

    def item(payload):
        flaky["calls"] += 1
        if payload["index"] == 1 and flaky["calls"] <= 3:
            raise RuntimeError("bad doc")
        return {"doc": payload["item"]}

    drive(repo, {"src": lambda p: {"docs": ["x", "y", "z"]}, "builtin.echo": item})
    assert repo.runs.get_run(run_id).status == "failed"
    with pytest.raises(psycopg.errors.RaiseException, match=r"map node per_doc"):
        requeue(sql, run_id, "per_doc[1]")

    assert requeue(sql, run_id, "per_doc") == (
        f"run {run_id} reopened: queued per_doc (map); reset to pending: agg")
    items = sql.execute("SELECT node_key, status, attempts FROM dagq.node_tasks "
                        "WHERE run_id = %s AND parent_id IS NOT NULL ORDER BY item_index",
                        (run_id,)).fetchall()
    assert [(i["node_key"], i["status"], i["attempts"]) for i in items] == [
        ("per_doc[0]", "queued", 0), ("per_doc[1]", "queued", 0), ("per_doc[2]", "queued", 0)]

    drive(repo, {"builtin.echo": item, "agg": merge})
    run = repo.runs.get_run(run_id)
    assert run.status == "succeeded"
    assert run.outputs == {"agg": {"per_doc": [{"doc": "x"}, {"doc": "y"}, {"doc": "z"}]}}


@pytest.mark.parametrize("status", ["queued", "running"])
def test_requeue_refuses_while_the_run_is_open(repo: Store, sql, status: str) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=fail_fast_diamond()).run_id
    if status == "running":
        repo.leases.lease(worker="w1", queue="default", limit=1, ttl_s=30)
    with pytest.raises(psycopg.errors.RaiseException, match=f"run {run_id} is still {status}"):
        requeue(sql, run_id, "a")


def test_requeue_refuses_what_cannot_run_and_changes_nothing(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=fail_fast_diamond()).run_id
    drive(repo, {"b": boom}, batch=1)
    before = node_states(sql, run_id)
    events = sql.execute("SELECT count(*) AS n FROM dagq.run_events").fetchone()["n"]

    with pytest.raises(psycopg.errors.RaiseException,
                       match=r"node d cannot run: its dependencies b \(failed\), c \(cancelled\)"):
        requeue(sql, run_id, "d")
    with pytest.raises(psycopg.errors.RaiseException, match="node a of run .* is succeeded"):
        requeue(sql, run_id, "a")
    with pytest.raises(psycopg.errors.NoDataFound, match="has no node nope"):
        requeue(sql, run_id, "nope")
    with pytest.raises(psycopg.errors.NoDataFound, match="not found"):
        requeue(sql, uuid.uuid4(), "b")

    assert node_states(sql, run_id) == before
    assert sql.execute("SELECT count(*) AS n FROM dagq.run_events").fetchone()["n"] == events
    assert one(sql, "SELECT status FROM dagq.runs WHERE id = %s", run_id)["status"] == "failed"


def test_requeue_refuses_while_a_task_of_the_finished_run_still_runs(
    repo: Store, sql
) -> None:
    wf = spec({"a": {"executor": "builtin.echo", "max_attempts": 1},
               "b": {"executor": "builtin.echo"}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    leased = {n.node_key: n for n in repo.leases.lease(worker="w1", queue="default", limit=2,
                                                  ttl_s=30)}
    repo.leases.fail(leased["a"].id, leased["a"].version, {"type": "X", "message": "x"})
    assert repo.runs.get_run(run_id).status == "failed"  # fail fast; b is still running
    with pytest.raises(psycopg.errors.RaiseException, match=r"still has running tasks \(b\)"):
        requeue(sql, run_id, "a")


def test_requeue_in_a_run_cancelled_before_it_started(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=fail_fast_diamond()).run_id
    repo.runs.cancel_run(run_id, None)

    assert requeue(sql, run_id, "a") == (
        f"run {run_id} reopened: queued a; reset to pending: b, c, d")
    # Never started, so it reopens queued and the first lease writes run_started.
    assert one(sql, "SELECT status FROM dagq.runs WHERE id = %s", run_id)["status"] == "queued"
    drive(repo)
    assert repo.runs.get_run(run_id).status == "succeeded"
    types = [r["type"] for r in sql.execute(
        "SELECT type FROM dagq.run_events WHERE run_id = %s ORDER BY id", (run_id,))]
    assert types.count("run_started") == 1 and types[-1] == "run_succeeded"
