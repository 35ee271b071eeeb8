"""The node-task lifecycle driven through the repository alone, on a real Postgres."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from dagq.errors import Conflict, NotFound
from dagq.store import Store
from tests.harness.drive import complete, complete_many, drive
from tests.harness.specs import diamond, fan_out, spec


def events(sql, run_id):
    return sql.execute(
        "SELECT node_key, type, attempt FROM dagq.run_events WHERE run_id = %s ORDER BY id",
        (run_id,),
    ).fetchall()


def test_submit_queues_roots_and_records_events(repo: Store, sql) -> None:
    result = repo.submissions.submit_run(tenant="t", spec=diamond(), inputs={"q": 1})
    assert result.created and result.status == "queued"
    rows = sql.execute(
        "SELECT node_key, status, deps_remaining FROM dagq.node_tasks WHERE run_id = %s "
        "ORDER BY node_key", (result.run_id,)).fetchall()
    assert [(r["node_key"], r["status"], r["deps_remaining"]) for r in rows] == [
        ("a", "queued", 0), ("b", "pending", 1), ("c", "pending", 1), ("d", "pending", 2)]
    assert [(e["node_key"], e["type"]) for e in events(sql, result.run_id)] == [
        (None, "run_queued"), ("a", "node_queued")]


def test_diamond_runs_in_dependency_order(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=diamond(), inputs={"x": 1}).run_id
    order = drive(repo)
    assert order[0] == "a" and order[-1] == "d" and set(order[1:3]) == {"b", "c"}
    run = repo.runs.get_run(run_id)
    assert run.status == "succeeded"
    assert run.outputs == {"d": {"key": "d"}}
    assert all(n.status == "succeeded" for n in run.nodes)
    types = [e["type"] for e in events(sql, run_id)]
    assert types[:3] == ["run_queued", "node_queued", "run_started"]
    assert types[-1] == "run_succeeded"
    assert types.count("node_started") == 4 and types.count("node_succeeded") == 4


def test_fan_out_aggregate_sees_all_outputs(repo: Store) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=fan_out(50)).run_id
    seen = {}

    def aggregate(payload):
        seen.update(payload["deps"])
        return {"n": len(payload["deps"])}

    order = drive(repo, {"agg": aggregate})
    assert order[0] == "root" and order[-1] == "agg" and len(order) == 52
    assert set(seen) == {f"m{i}" for i in range(50)}
    assert repo.runs.get_run(run_id).status == "succeeded"


def test_payload_carries_run_inputs_deps_and_params(repo: Store) -> None:
    wf = spec({"a": {"executor": "builtin.echo", "params": {"p": 1}},
               "b": {"executor": "builtin.echo", "depends_on": ["a"], "params": {"p": 2}}})
    repo.submissions.submit_run(tenant="t", spec=wf, inputs={"question": "why"})
    payloads = {}

    def record(payload):
        return payloads.setdefault(len(payloads), payload) and {"v": len(payloads)}

    drive(repo, {"builtin.echo": record})
    assert payloads[0] == {"run": {"question": "why"}, "deps": {}, "params": {"p": 1}}
    assert payloads[1] == {"run": {"question": "why"}, "deps": {"a": {"v": 1}}, "params": {"p": 2}}


def test_stale_completion_changes_nothing(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(
        tenant="t", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
    [node] = repo.leases.lease(worker="w1", queue="default", limit=1, ttl_s=30)
    assert complete(repo, node.id, node.version, {"first": True}) is True
    # A duplicate or late completion with the same (now old) version is a no-op.
    assert complete(repo, node.id, node.version, {"second": True}) is False
    assert repo.leases.fail(node.id, node.version, {"type": "X", "message": "late"}) == "stale"
    row = sql.execute("SELECT outputs, version FROM dagq.node_tasks WHERE id = %s",
                      (node.id,)).fetchone()
    assert row["outputs"] == {"first": True}
    assert repo.runs.get_run(run_id).status == "succeeded"
    assert [e["type"] for e in events(sql, run_id)].count("run_succeeded") == 1


def test_wrong_version_completion_is_fenced(repo: Store, sql) -> None:
    repo.submissions.submit_run(tenant="t", spec=spec({"a": {"executor": "builtin.noop"}}))
    [node] = repo.leases.lease(worker="w1", queue="default", limit=1, ttl_s=30)
    assert complete(repo, node.id, node.version - 1, {}) is False
    assert sql.execute("SELECT status FROM dagq.node_tasks WHERE id = %s",
                       (node.id,)).fetchone()["status"] == "running"


def test_retry_then_success_with_backoff(repo: Store, sql) -> None:
    wf = spec({"a": {"executor": "builtin.fail", "backoff": {"initial_s": 0, "max_s": 0}}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    calls = []

    def flaky(payload):
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError(f"boom {len(calls)}")
        return {"ok": True}

    drive(repo, {"a": flaky})
    run = repo.runs.get_run(run_id)
    assert run.status == "succeeded" and run.nodes[0].attempts == 3
    types = [(e["type"], e["attempt"]) for e in events(sql, run_id) if e["node_key"] == "a"]
    assert [t for t in types if t[0] == "node_retry"] == [("node_retry", 1), ("node_retry", 2)]


def test_retry_waits_for_backoff(repo: Store, sql) -> None:
    wf = spec({"a": {"executor": "builtin.fail", "backoff": {"initial_s": 60, "max_s": 60}}})
    repo.submissions.submit_run(tenant="t", spec=wf)
    [node] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    assert repo.leases.fail(node.id, node.version, {"type": "E", "message": "m"}) == "retry"
    assert repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30) == []
    delay = sql.execute("SELECT extract(epoch FROM available_at - now()) AS s "
                        "FROM dagq.node_tasks WHERE id = %s", (node.id,)).fetchone()["s"]
    assert 29 <= float(delay) <= 60


def test_fail_fast_cancels_the_rest(repo: Store, sql) -> None:
    wf = spec({
        "a": {"executor": "builtin.noop"},
        "bad": {"executor": "builtin.fail", "depends_on": ["a"], "max_attempts": 1},
        "slow": {"executor": "builtin.noop", "depends_on": ["a"]},
        "after": {"executor": "builtin.noop", "depends_on": ["slow"]},
    })
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    [a] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    complete(repo, a.id, a.version, {})
    leased = {n.node_key: n for n in repo.leases.lease(
        worker="w", queue="default", limit=5, ttl_s=30)}
    assert set(leased) == {"bad", "slow"}
    bad = leased["bad"]
    assert repo.leases.fail(bad.id, bad.version, {"type": "E", "message": "no"}) == "failed"
    run = repo.runs.get_run(run_id)
    assert run.status == "failed"
    assert run.error["node"] == "bad"
    statuses = {n.key: n.status for n in run.nodes}
    assert statuses["after"] == "cancelled"
    # "slow" was leased: it is still running and will be stopped at its next heartbeat.
    assert statuses["slow"] == "running"
    hb = repo.leases.heartbeat(worker="w", node_ids=[leased["slow"].id], ttl_s=30)
    assert hb.stop == {leased["slow"].id}
    assert repo.leases.fail(leased["slow"].id, leased["slow"].version, {"type": "Cancelled",
                            "message": "run finished"}, cancelled=True) == "cancelled"
    assert repo.runs.get_run(run_id).nodes_remaining == 0


def test_partial_success_skips_only_descendants(repo: Store, sql) -> None:
    wf = spec({
        "a": {"executor": "builtin.noop"},
        "bad": {"executor": "builtin.fail", "depends_on": ["a"], "max_attempts": 1},
        "below": {"executor": "builtin.noop", "depends_on": ["bad"]},
        "deeper": {"executor": "builtin.noop", "depends_on": ["below", "ok"]},
        "ok": {"executor": "builtin.noop", "depends_on": ["a"]},
    }, fail_fast=False)
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id

    def bad(payload):
        raise RuntimeError("bad")

    drive(repo, {"bad": bad})
    run = repo.runs.get_run(run_id)
    statuses = {n.key: n.status for n in run.nodes}
    assert statuses == {"a": "succeeded", "bad": "failed", "below": "skipped",
                        "deeper": "skipped", "ok": "succeeded"}
    assert run.status == "partial_succeeded"


def test_partial_with_nothing_succeeded_is_failed(repo: Store) -> None:
    wf = spec({"a": {"executor": "builtin.fail", "max_attempts": 1}}, fail_fast=False)
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    drive(repo, {"a": lambda p: 1 / 0})
    assert repo.runs.get_run(run_id).status == "failed"


def test_same_event_key_is_idempotent(repo: Store) -> None:
    wf = diamond()
    first = repo.submissions.submit_run(tenant="t", spec=wf, inputs={"a": 1}, event_key="k1")
    again = repo.submissions.submit_run(tenant="t", spec=wf, inputs={"a": 1}, event_key="k1")
    assert first.created and not again.created and again.run_id == first.run_id
    other_tenant = repo.submissions.submit_run(tenant="u", spec=wf, inputs={"a": 1}, event_key="k1")
    assert other_tenant.created and other_tenant.run_id != first.run_id
    with pytest.raises(Conflict):
        repo.submissions.submit_run(tenant="t", spec=wf, inputs={"a": 2}, event_key="k1")


def test_fifty_concurrent_submissions_with_one_key(repo: Store, sql) -> None:
    wf = fan_out(5)
    barrier = threading.Barrier(50)

    def submit(_):
        barrier.wait()
        return repo.submissions.submit_run(tenant="t", spec=wf, inputs={"x": 1}, event_key="dup")

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(submit, range(50)))
    assert sum(r.created for r in results) == 1
    assert sum(not r.created for r in results) == 49
    assert len({r.run_id for r in results}) == 1
    assert sql.execute("SELECT count(*) AS n FROM dagq.runs").fetchone()["n"] == 1
    assert sql.execute("SELECT count(*) AS n FROM dagq.node_tasks").fetchone()["n"] == 7


def test_eight_threads_lease_every_node_exactly_once(repo: Store, sql) -> None:
    sql.execute("""
        INSERT INTO dagq.runs (id, tenant, workflow, spec, fingerprint, nodes_total,
                               nodes_remaining)
        VALUES ('00000000-0000-0000-0000-000000000001', 't', 'bulk', '{}', 'f', 10000, 10000)
    """)
    sql.execute("""
        INSERT INTO dagq.node_tasks (run_id, node_key, executor, status, queued_at)
        SELECT '00000000-0000-0000-0000-000000000001', 'n' || g, 'builtin.noop', 'queued', now()
        FROM generate_series(1, 10000) g
    """)
    leased: list[list[int]] = [[] for _ in range(8)]

    def lease_all(i: int) -> None:
        while batch := repo.leases.lease(worker=f"w{i}", queue="default", limit=25, ttl_s=30):
            leased[i].extend(n.id for n in batch)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lease_all, range(8)))
    all_ids = [i for ids in leased for i in ids]
    assert len(all_ids) == 10_000 and len(set(all_ids)) == 10_000
    assert sum(1 for ids in leased if ids) > 1  # the work was actually shared
    started = sql.execute("SELECT count(*) AS n FROM dagq.run_events "
                          "WHERE type = 'node_started'").fetchone()["n"]
    assert started == 10_000


def test_cancel_and_retry_a_run(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=diamond()).run_id
    assert repo.runs.cancel_run(run_id, "t") == "cancelled"
    run = repo.runs.get_run(run_id)
    assert run.status == "cancelled" and {n.status for n in run.nodes} == {"cancelled"}
    assert repo.leases.lease(worker="w", queue="default", limit=10, ttl_s=30) == []
    assert repo.runs.retry_run(run_id, "t") == "running"
    assert {n.key: n.status for n in repo.runs.get_run(run_id).nodes} == {
        "a": "queued", "b": "pending", "c": "pending", "d": "pending"}
    drive(repo)
    assert repo.runs.get_run(run_id).status == "succeeded"
    with pytest.raises(Conflict):
        repo.runs.retry_run(run_id, "t")
    with pytest.raises(Conflict):
        repo.runs.cancel_run(run_id, "t")


def test_retry_reruns_only_what_did_not_succeed(repo: Store) -> None:
    wf = spec({"a": {"executor": "builtin.noop"},
               "b": {"executor": "builtin.fail", "depends_on": ["a"], "max_attempts": 1},
               "c": {"executor": "builtin.noop", "depends_on": ["b"]}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    drive(repo, {"b": lambda p: 1 / 0})
    assert repo.runs.get_run(run_id).status == "failed"
    repo.runs.retry_run(run_id, "t")
    assert drive(repo) == ["b", "c"]
    assert repo.runs.get_run(run_id).status == "succeeded"


def test_other_tenant_sees_not_found(repo: Store) -> None:
    run_id = repo.submissions.submit_run(tenant="t", spec=diamond()).run_id
    with pytest.raises(NotFound):
        repo.runs.get_run(run_id, "someone-else")
    with pytest.raises(NotFound):
        repo.runs.cancel_run(run_id, "someone-else")


def test_requeue_unstarted_spends_no_attempt(repo: Store, sql) -> None:
    repo.submissions.submit_run(tenant="t", spec=spec({"a": {"executor": "builtin.noop"}}))
    [node] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    assert repo.leases.requeue_unstarted(worker="w", leases=[(node.id, node.version)]) == 1
    row = sql.execute("SELECT status, attempts FROM dagq.node_tasks WHERE id = %s",
                      (node.id,)).fetchone()
    assert (row["status"], row["attempts"]) == ("queued", 0)
    # A second requeue with the old version does nothing.
    assert repo.leases.requeue_unstarted(worker="w", leases=[(node.id, node.version)]) == 0


def test_retry_expands_a_failed_map_node_again(repo: Store) -> None:
    wf = spec({"src": {"executor": "builtin.echo", "params": {"items": [1, 2, 3]}},
               "each": {"executor": "t.each", "depends_on": ["src"], "max_attempts": 1,
                        "map": {"dep": "src", "path": "params.items"}},
               "sum": {"executor": "builtin.merge", "depends_on": ["each"]}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    calls = []

    def each(payload):
        calls.append(payload["item"])
        if len(calls) == 2:
            raise RuntimeError("second item fails once")
        return {"v": payload["item"]}

    drive(repo, {"t.each": each, "src": lambda p: p})
    assert repo.runs.get_run(run_id).status == "failed"
    repo.runs.retry_run(run_id, "t")
    drive(repo, {"t.each": lambda p: {"v": p["item"]}, "src": lambda p: p})
    run = repo.runs.get_run(run_id)
    assert run.status == "succeeded"
    each_node = next(n for n in run.nodes if n.key == "each")
    assert each_node.outputs == [{"v": 1}, {"v": 2}, {"v": 3}] and each_node.items == 3


def test_retry_rechecks_the_if_condition(repo: Store, sql) -> None:
    wf = spec({"route": {"executor": "builtin.echo"},
               "bad": {"executor": "builtin.fail", "max_attempts": 1},
               "only_b": {"executor": "builtin.noop", "depends_on": ["route"],
                          "if": {"dep": "route", "path": "r", "in": ["b"]}}}, fail_fast=False)
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    drive(repo, {"route": lambda p: {"r": "a"}, "bad": lambda p: 1 / 0})
    assert {n.key: n.status for n in repo.runs.get_run(run_id).nodes}["only_b"] == "skipped"
    repo.runs.retry_run(run_id, "t")
    drive(repo, {"route": lambda p: {"r": "a"}})
    statuses = {n.key: n.status for n in repo.runs.get_run(run_id).nodes}
    assert statuses == {"route": "succeeded", "bad": "succeeded", "only_b": "skipped"}


def test_retry_refuses_while_a_node_still_runs(repo: Store) -> None:
    wf = spec({"a": {"executor": "builtin.noop"}, "b": {"executor": "builtin.noop"}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    leased = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    repo.runs.cancel_run(run_id, "t")
    with pytest.raises(Conflict, match="still has running nodes"):
        repo.runs.retry_run(run_id, "t")
    repo.leases.fail(leased[0].id, leased[0].version, {"type": "Cancelled", "message": "x"},
                     cancelled=True)
    assert repo.runs.retry_run(run_id, "t") == "running"


def test_complete_many_releases_a_join_once_and_skips_stale_items(repo: Store, sql) -> None:
    from dagq.store import Completion

    runs = [repo.submissions.submit_run(tenant="t", spec=fan_out(3)).run_id for _ in range(2)]
    roots = repo.leases.lease(worker="w", queue="default", limit=10, ttl_s=30)
    assert complete_many(repo, [Completion(n.id, n.version, {}) for n in roots]) == [True] * 2
    middles = repo.leases.lease(worker="w", queue="default", limit=10, ttl_s=30)
    assert len(middles) == 6
    stale = Completion(roots[0].id, roots[0].version, {"late": True})
    results = complete_many(repo, [*(Completion(n.id, n.version, {"m": n.node_key})
                                    for n in middles), stale])
    assert results == [True] * 6 + [False]
    aggs = repo.leases.lease(worker="w", queue="default", limit=10, ttl_s=30)
    assert sorted(n.node_key for n in aggs) == ["agg", "agg"]
    assert all(len(n.deps) == 3 for n in aggs)
    complete_many(repo, [Completion(n.id, n.version, {}) for n in aggs])
    for run_id in runs:
        assert repo.runs.get_run(run_id).status == "succeeded"
        events = [e["type"] for e in sql.execute(
            "SELECT type FROM dagq.run_events WHERE run_id = %s ORDER BY id", (run_id,))]
        assert events.count("run_succeeded") == 1 and events[-1] == "run_succeeded"
        assert events.count("node_queued") == 5  # root, 3 middles, agg: each once


def test_stale_outcomes_are_counted(repo: Store, sql) -> None:
    repo.submissions.submit_run(tenant="t", spec=spec({"a": {"executor": "builtin.noop"}}))
    [node] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    complete(repo, node.id, node.version, {})
    complete(repo, node.id, node.version, {})
    repo.leases.fail(node.id, node.version, {"type": "E", "message": "late"})
    row = sql.execute("SELECT value FROM dagq.counters WHERE name = 'stale_completions'"
                      ).fetchone()
    assert row["value"] == 2
