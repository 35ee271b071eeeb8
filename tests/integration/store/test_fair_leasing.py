"""Fair leasing across tenants (issue 18): within a queue and a priority, starts are
shared between the tenants with queued work in proportion to their weights; priority
still goes first; a small tenant is leased promptly behind a big backlog; a tenant's
max_running_nodes holds across concurrent leasers; the dequeue stays index-driven with
100 tenants and 1,000,000 queued nodes. The store's lease call is driven directly."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter

import psycopg
import pytest
from psycopg import sql as pgsql
from psycopg.rows import dict_row

from dagq.runtime.db import open_pool
from dagq.runtime.sqlfiles import queries
from dagq.store import Store
from tests.harness.plans import generic_plan, scans_of


def run_of(sql: psycopg.Connection, tenant: str, nodes: int, *, priority: int = 0) -> uuid.UUID:
    """One open run of `tenant` with `nodes` queued no-op nodes (rows written directly)."""
    run_id = uuid.uuid4()
    sql.execute("""
        INSERT INTO dagq.runs (id, tenant, workflow, spec, fingerprint, nodes_total,
                               nodes_remaining, status)
        VALUES (%(id)s, %(tenant)s, 'fair', '{}', 'f', %(n)s, %(n)s, 'queued')
    """, {"id": run_id, "tenant": tenant, "n": nodes})
    sql.execute("""
        INSERT INTO dagq.node_tasks (run_id, node_key, executor, status, priority, queued_at)
        SELECT %(id)s, 'n' || g, 'builtin.noop', 'queued', %(priority)s, now()
        FROM generate_series(1, %(n)s) g
    """, {"id": run_id, "n": nodes, "priority": priority})
    return run_id


def finish(sql: psycopg.Connection, ids: list[int]) -> None:
    """The leases' work is done (as a completion leaves the rows)."""
    sql.execute("UPDATE dagq.node_tasks SET status = 'succeeded', lease_expires_at = NULL, "
                "finished_at = now() WHERE id = ANY(%s)", (ids,))


def lease(repo: Store, limit: int, worker: str = "w") -> list:
    return repo.leases.lease(worker=worker, queue="default", limit=limit, ttl_s=60)


def test_the_node_rows_carry_their_runs_tenant(repo: Store, sql) -> None:
    run_id = run_of(sql, "acme", 2)
    assert {r["tenant"] for r in sql.execute(
        "SELECT tenant FROM dagq.node_tasks WHERE run_id = %s", (run_id,))} == {"acme"}


def test_starts_follow_the_weights_over_a_drain(repo: Store, sql) -> None:
    """A pool of 12 slots: lease into the free ones, finish the oldest 6, again. While
    every tenant has a backlog, starts per tenant are within 10% of weight shares."""
    weights = {"a": 1.0, "b": 2.0, "c": 3.0}
    runs = {}
    for name, weight in weights.items():
        repo.tenants.put_tenant(name, weight=weight)
        runs[run_of(sql, name, 500)] = name
    started: Counter[str] = Counter()
    held: list[int] = []
    while sum(started.values()) < 600:
        got = lease(repo, 12 - len(held))
        assert got, "the backlog is not empty"
        started.update(runs[n.run_id] for n in got)
        held.extend(n.id for n in got)
        finish(sql, held[:6])
        held = held[6:]
    total = sum(started.values())
    for name, weight in weights.items():
        share = total * weight / sum(weights.values())
        assert abs(started[name] - share) <= 0.1 * share, (started, name)


def test_a_small_tenant_starts_promptly_behind_a_big_backlog(repo: Store, sql) -> None:
    big = run_of(sql, "big", 5000)
    first = lease(repo, 3)  # the big tenant's nodes running
    assert {n.run_id for n in first} == {big}
    small = run_of(sql, "small", 1)
    assert [n.run_id for n in lease(repo, 1)] == [small]
    # And in a batch: one of a batch, not after the big tenant's 5,000.
    small2 = run_of(sql, "small", 1)
    assert small2 in {n.run_id for n in lease(repo, 4)}


def test_priority_goes_before_fairness(repo: Store, sql) -> None:
    repo.tenants.put_tenant("heavy", weight=100)
    heavy = run_of(sql, "heavy", 20)
    light = run_of(sql, "light", 5, priority=10)
    # Every high-priority node goes first, though the other tenant weighs 100 times more.
    assert Counter(n.run_id for n in lease(repo, 8)) == Counter({light: 5, heavy: 3})


def test_one_tenant_takes_the_plain_path_in_lease_order(repo: Store, sql) -> None:
    run_id = run_of(sql, "solo", 30)
    keys = [n.node_key for n in lease(repo, 10)]
    assert keys == [f"n{g}" for g in range(1, 11)]
    assert {n.run_id for n in lease(repo, 5)} == {run_id}


def test_max_running_nodes_holds_for_two_concurrent_leasers(repo: Store, sql,
                                                            db_url: str) -> None:
    repo.tenants.put_tenant("capped", max_running_nodes=3)
    capped = run_of(sql, "capped", 200)
    free = run_of(sql, "free", 200)
    other = Store(open_pool(db_url, size=2, name="other"))
    seen: list[int] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(2)

    def leaser(store: Store, worker: str) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as own:
                for _ in range(40):
                    barrier.wait()
                    got = lease(store, 2, worker)
                    seen.append(own.execute(
                        "SELECT count(*) AS n FROM dagq.node_tasks WHERE tenant = 'capped' "
                        "AND status = 'running'").fetchone()["n"])
                    finish(own, [n.id for n in got if n.run_id == capped][:1])
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
            barrier.abort()

    try:
        threads = [threading.Thread(target=leaser, args=(s, w))
                   for s, w in ((repo, "w1"), (other, "w2"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        other.close()
    assert not failures, failures
    assert max(seen) == 3, seen  # reached, never passed
    assert sql.execute("SELECT count(*) AS n FROM dagq.node_tasks WHERE run_id = %s AND "
                       "status <> 'queued'", (free,)).fetchone()["n"] > 40
    # The hand-off never leases a capped tenant's node: it is left to lease_nodes.
    row = sql.execute("SELECT id FROM dagq.node_tasks WHERE run_id = %s AND status = "
                      "'queued' LIMIT 1", (capped,)).fetchone()
    with sql.transaction():
        handed = sql.execute(queries()["lease_released"], {
            "ids": [row["id"]], "queue": "default", "executors": ["builtin.noop"],
            "worker": "w3", "ttl_s": 30}).fetchall()
    assert handed == []


def test_max_running_nodes_holds_for_a_tenant_alone(repo: Store, sql) -> None:
    """One tenant with queued work takes the plain walk: its cap holds there too."""
    repo.tenants.put_tenant("solo", max_running_nodes=2)
    run_of(sql, "solo", 10)
    assert len(lease(repo, 10)) == 2
    assert lease(repo, 10) == []
    repo.tenants.put_tenant("solo", max_running_nodes=3)
    assert len(lease(repo, 10)) == 1


@pytest.fixture
def backlog(sql) -> psycopg.Connection:
    """100 tenants, 1,000,000 queued nodes: one tenant has 990,000, 99 share the rest."""
    sql.execute("""
        INSERT INTO dagq.runs (id, tenant, workflow, spec, fingerprint, nodes_total,
                               nodes_remaining, status)
        SELECT ('00000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid, 't' || g,
               'bulk', '{}', 'f', 1, 1, 'queued'
        FROM generate_series(1, 100) g
    """)
    # Built as a restore would (rows first, unlogged, without the foreign key's per-row
    # check, then each index in one sort): the same rows and indexes, far faster.
    indexes = [r["indexdef"] for r in sql.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'dagq' "
        "AND tablename = 'node_tasks' AND indexname <> 'node_tasks_pkey'")]
    sql.execute("ALTER TABLE dagq.node_tasks DROP CONSTRAINT node_tasks_run_node")
    for name in sql.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'dagq' "
                            "AND tablename = 'node_tasks' AND indexname NOT IN "
                            "('node_tasks_pkey', 'node_tasks_run_node')").fetchall():
        sql.execute(pgsql.SQL("DROP INDEX dagq.{}").format(pgsql.Identifier(name["indexname"])))
    sql.execute("ALTER TABLE dagq.node_tasks SET UNLOGGED")  # a scratch database: no WAL
    sql.execute("SET session_replication_role = replica")
    sql.execute("""
        INSERT INTO dagq.node_tasks (run_id, node_key, executor, status, queued_at, tenant)
        SELECT ('00000000-0000-0000-0000-' || lpad(t::text, 12, '0'))::uuid, 'n' || g,
               'builtin.noop', 'queued', now(), 't' || t
        FROM generate_series(1, 1000000) g,
             LATERAL (SELECT CASE WHEN g <= 990000 THEN 1 ELSE g % 99 + 2 END AS t) x
    """)
    sql.execute("RESET session_replication_role")
    sql.execute("SET maintenance_work_mem = '256MB'")
    for definition in indexes:
        sql.execute(definition)
    sql.execute("ALTER TABLE dagq.node_tasks ADD CONSTRAINT node_tasks_run_node "
                "UNIQUE USING INDEX node_tasks_run_node")
    sql.execute("ANALYZE dagq.node_tasks, dagq.runs")
    return sql


def test_fair_lease_plan_is_index_driven_with_100_tenants_and_1m_nodes(backlog) -> None:
    sql = backlog
    params = {"worker": "w", "queue": "default", "limit": 16, "ttl_s": 30,
              "executors": None, "capped": None}
    custom = sql.execute("EXPLAIN (FORMAT JSON) " + queries()["lease_nodes"], params).fetchone()
    [generic] = generic_plan(sql, queries()["lease_nodes"], json=True)
    for plan in (custom, generic):
        scans = scans_of(plan["QUERY PLAN"][0]["Plan"], "node_tasks")
        assert scans and all("Seq Scan" not in s["Node Type"] for s in scans), scans
        names = {s.get("Index Name") for s in scans}
        assert {"node_tasks_fair", "node_tasks_dequeue"} <= names, names
        assert names <= {"node_tasks_fair", "node_tasks_dequeue", "node_tasks_pkey",
                         "node_tasks_lease_expiry"}, names
        for scan in scans:  # the primary key only to lock a chosen candidate
            if scan.get("Index Name") == "node_tasks_pkey":
                assert scan["Index Cond"].startswith("(id = "), json.dumps(scan)
    # And it works: 16 leases spread over the tenants, the small ones not starved.
    got = sql.execute(queries()["lease_nodes"], params).fetchall()
    assert len(got) == 16 and len({r["run_id"] for r in got}) == 16


def test_queues_break_down_by_tenant(db_url: str) -> None:
    """GET /v1/queues: each queue's `tenants` (ready, delayed, running, weight, cap); a
    tenant key sees only its own tenant, an admin key every tenant."""
    from tests.harness.api import Api

    with Api(db_url) as api:
        api.repo.tenants.put_tenant("acme", weight=3, max_running_nodes=5)
        flow = {"name": "two", "nodes": {"a": {"executor": "builtin.echo"},
                                          "b": {"executor": "builtin.echo"}}}
        api.submit(api.acme, workflow=flow)
        api.submit(api.globex, workflow=flow)
        api.submit(api.globex, workflow=flow)
        [node] = api.repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)

        def tenants(headers):
            response = api.client.get("/v1/queues", headers=headers)
            assert response.status_code == 200, response.text
            [default] = [q for q in response.json()["queues"] if q["name"] == "default"]
            assert default["queued"] + default["running"] == sum(
                t["queued"] + t["running"] for t in default["tenants"])
            return {t["name"]: t for t in default["tenants"]}

        every = tenants(api.admin)
        assert set(every) == {"acme", "globex"}
        assert every["acme"]["weight"] == 3.0 and every["acme"]["max_running_nodes"] == 5
        assert every["globex"]["weight"] == 1.0 and every["globex"]["max_running_nodes"] is None
        assert sum(t["running"] for t in every.values()) == 1
        assert every["acme"]["queued"] + every["globex"]["queued"] == 5
        assert every["globex"]["queued"] + every["globex"]["running"] == 4
        assert node is not None
        assert set(tenants(api.globex)) == {"globex"}
