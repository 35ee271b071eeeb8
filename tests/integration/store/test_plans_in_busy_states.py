"""Plans of the hot statements in the table states a busy queue goes through (issue 30).

The plan tests beside the statements (tests/integration/runtime/test_schema.py,
test_fair_leasing.py) look at small tables or at one bulk insert + ANALYZE. A queue in
production also passes through these, and a plan that flips in one of them slows every
call until the next ANALYZE:

  a  a backlog of 20,000 queued runs beside 50,000 finished runs (their nodes and events),
     before any ANALYZE: a bulk load, a restore, a major upgrade (pg_upgrade carries no
     statistics before PostgreSQL 18), the minute before autovacuum's first ANALYZE;
  b  the same after ANALYZE;
  c  the same after VACUUM + ANALYZE, as autovacuum leaves it (visibility map set: index
     only scans become cheap, which is what tempts a planner to walk a wider index);
  d  a nearly empty queue (10 queued) beside 200,000 finished runs, after ANALYZE: the
     state where a planner may walk the primary key or a history index instead.

Every state also holds the in-flight work the other statements need: 32 DAG runs whose
first node runs under a lease and whose second is pending on it, and 10 waits.

Each statement is planned as it runs: the workers' statements as generic plans (their
pool plans each prepared statement once, dagq.runtime.db), the sweeper's and the API's
with their arguments (plan_cache_mode auto); through tests.harness.plans.generic_plan,
which shows the generic plan on PostgreSQL 15 too. Asserted for each: every scan of
node_tasks, runs and run_events is an index scan of the index meant for it (by the
scan's alias in the statement), never a Seq Scan; and the estimated cost stays under
BASE_COST + COST_PER_ROW_IN_FLIGHT x the nodes in flight (see there for why).

The states are built with bulk SQL, autovacuum off on the tables (a state is what the
test made it, not what autovacuum did meanwhile), once per module and state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg.rows import dict_row

from dagq.runtime.sqlfiles import queries
from dagq.store import Store
from tests.harness import pg
from tests.harness.plans import generic_plan

HOT_TABLES = ("node_tasks", "runs", "run_events")
RUN_ID = "('00000000-0000-0000-0000-' || lpad(({})::text, 12, '0'))::uuid"
BACKLOG_BASE, FLIGHT_BASE = 10_000_000, 20_000_000  # run numbers of the open runs
# The cost bound. A generic plan guesses a tenth of the rows for a LIMIT $n, so a hot
# statement's estimate grows with the rows it may have to walk: the queued, running,
# pending and waiting nodes (a few cost units each: an index tuple and a heap page). It
# must not grow with history: in state d (84 nodes in flight) the bound, 2,836, is below
# a third of one sequential pass over node_tasks or runs (about 10,000 each at 200,000
# rows), so a plan that reads the finished rows exceeds it; in states a-c it is 4 units
# per queued node, above the generic lease plan's estimate (about 2.9 per queued node).
BASE_COST = 2500.0
COST_PER_ROW_IN_FLIGHT = 4.0


@dataclass(frozen=True)
class Hot:
    """A statement and the indexes its scans of the hot tables may use, by alias (the
    planner names a statement's n-th reference to alias x `x_n`)."""

    name: str
    indexes: dict[str, set[str]]
    generic: bool = True  # planned once, as the workers' pool does
    arguments: dict = field(default_factory=dict)  # for a custom plan (generic=False)


FAIR, DEQUEUE, PKEY = "node_tasks_fair", "node_tasks_dequeue", "node_tasks_pkey"
HOT = [
    # lease_nodes: the tenant skip-scan (f, f_1, f_2) and each tenant's head (c_1) on the
    # fair index; the one-tenant walk (c) on the dequeue index; running leases (r) on the
    # lease index; the chosen candidates (c_2) locked by primary key, or by a join
    # with the (small) fair index.
    Hot("lease_nodes", {"f": {FAIR}, "f_1": {FAIR}, "f_2": {FAIR},
                        "r": {"node_tasks_lease_expiry"}, "c": {DEQUEUE}, "c_1": {FAIR},
                        "c_2": {PKEY, FAIR}}),
    Hot("lease_released", {"q": {DEQUEUE}, "c": {PKEY}}),
    # Either partial index of queued rows (PostgreSQL 15 takes the fair one in state d).
    Hot("lease_around_locked_runs", {"c": {DEQUEUE, FAIR}, "r": {"runs_pkey"}}),
    # The batch's rows by primary key, or through the running rows' partial index.
    Hot("complete_nodes", {"t": {PKEY, "node_tasks_lease_expiry"}}),
    Hot("account_runs", {"r": {"runs_pkey"}, "r_1": {"runs_pkey"},
                         "t": {"node_tasks_run_node"}, "c": {"runs_parent"}}),
    Hot("release_dependents", {"t": {PKEY}, "t_1": {"node_tasks_run_node"}}),
    Hot("expired_leases", {"t": {"node_tasks_lease_expiry"}}, generic=False,
        arguments={"now": None, "limit": 500}),
    Hot("expired_leases", {"t": {"node_tasks_lease_expiry"}}),
    Hot("due_waits", {"t": {"node_tasks_wait_deadline"}}, generic=False,
        arguments={"now": None, "limit": 500}),
    Hot("due_waits", {"t": {"node_tasks_wait_deadline"}}),
    # Its day partitions (migration 025) are named for their days, not the hot table:
    # their reads are pinned in test_partitions; here the run's created_at bound (r).
    Hot("events_after", {"run_events": {"run_events_run"}, "r": {"runs_pkey"}}, generic=False,
        arguments={"run_id": f"00000000-0000-0000-0000-{FLIGHT_BASE + 1:012d}",
                   "after": 0, "limit": 500}),
    Hot("events_after", {"run_events": {"run_events_run"}, "r": {"runs_pkey"}}),
    # The API's run list (custom plans: see test_list_runs_generic_plan_is_never_chosen):
    # the newest page, and one tenant's (by its index, or, for a tenant with a quarter of
    # the runs as here, down the newest runs filtering: a few pages more, never history).
    # (`r`: dagq.run_summaries, the view list_runs reads, migration 030)
    Hot("list_runs", {"r": {"runs_created"}, "t": {"node_tasks_run_node"}},
        generic=False, arguments={"tenant": None, "parent": None, "status": None,
                                  "workflow": None, "created_after": None,
                                  "created_before": None, "cursor_at": None,
                                  "cursor_id": None, "limit": 50}),
    Hot("list_runs", {"r": {"runs_tenant_created", "runs_created"},
                      "t": {"node_tasks_run_node"}},
        generic=False, arguments={"tenant": "t1", "parent": None, "status": None,
                                  "workflow": None, "created_after": None,
                                  "created_before": None, "cursor_at": None,
                                  "cursor_id": None, "limit": 50}),
]

# Plans that flip in a state, found by these tests on PostgreSQL 15 and 18 alike (issue 30,
# docs/performance.md "Plans in a busy queue's states"): strict, so a fix shows as XPASS.
KNOWN_FLIPS = {
    ("a", "lease_nodes"): "before ANALYZE the fair branch's tenant probes (f, f_1, f_2) and "
                          "each tenant's head (c_1) walk node_tasks_dequeue and sort or "
                          "filter the whole queue by tenant: 62-107 ms a lease on 18 and "
                          "198-312 ms on 15 instead of 1.6-12; the sweeper's analyze pass "
                          "and `dagq db migrate` end the state (dagq.runtime.analyze)",
    ("a", "list_runs generic"): "before ANALYZE the custom plan of the newest page is "
                                "estimated dearer (18,795) than the generic one (3,374: "
                                "a sort of all runs): auto mode would pick it from the 6th "
                                "call (80-170 ms a page instead of 0.5), so the store runs "
                                "list_runs unprepared; the sweeper's analyze pass and "
                                "`dagq db migrate` end the state",
}


def build_history(conn: psycopg.Connection, *, finished: int, queued: int) -> None:
    """`finished` succeeded one-node runs (4 tenants, one a second apart, two events
    each) and `queued` queued one-node runs, then the in-flight work (module docstring)."""
    for table in HOT_TABLES:  # the state is what the test made it, not autovacuum
        leaves = conn.execute("SELECT relid::regclass::text AS leaf FROM "
                              "pg_partition_tree(%s::regclass) WHERE isleaf",
                              (f"dagq.{table}",)).fetchall()
        for row in leaves:  # run_events: its day partitions (migration 025)
            leaf = row["leaf"] if isinstance(row, dict) else row[0]
            conn.execute(f"ALTER TABLE {leaf} SET (autovacuum_enabled = false)")
    ago = "now() - make_interval(secs => g)"
    conn.execute(f"""
        INSERT INTO dagq.runs (id, tenant, workflow, spec, fingerprint, nodes_total,
                               nodes_remaining, nodes_succeeded, status, created_at,
                               started_at, finished_at)
        SELECT {RUN_ID.format('g')}, 't' || mod(g, 4), 'flat', '{{}}', 'f', 1, 0, 1,
               'succeeded', {ago}, {ago}, {ago}
        FROM generate_series(1, %(n)s) g""", {"n": finished})
    conn.execute(f"""
        INSERT INTO dagq.node_tasks (run_id, node_key, executor, status, attempts, tenant,
                                     queued_at, started_at, finished_at, outputs, version)
        SELECT {RUN_ID.format('g')}, 'n', 'builtin.noop', 'succeeded', 1, 't' || mod(g, 4),
               {ago}, {ago}, {ago}, '{{}}', 3
        FROM generate_series(1, %(n)s) g""", {"n": finished})
    conn.execute(f"""
        INSERT INTO dagq.run_events (run_id, node_key, type, attempt)
        SELECT {RUN_ID.format('g')}, k.node_key, k.type, k.attempt
        FROM generate_series(1, %(n)s) g,
             (VALUES ('n', 'node_succeeded', 1), (NULL, 'run_succeeded', NULL))
             AS k(node_key, type, attempt)""", {"n": finished})
    conn.execute(f"""
        INSERT INTO dagq.runs (id, tenant, workflow, spec, fingerprint, nodes_total,
                               nodes_remaining, status)
        SELECT {RUN_ID.format(f'{BACKLOG_BASE} + g')}, 't' || mod(g, 4), 'flat', '{{}}', 'f',
               1, 1, 'queued'
        FROM generate_series(1, %(n)s) g""", {"n": queued})
    conn.execute(f"""
        INSERT INTO dagq.node_tasks (run_id, node_key, executor, status, tenant, queued_at)
        SELECT {RUN_ID.format(f'{BACKLOG_BASE} + g')}, 'n', 'builtin.noop', 'queued',
               't' || mod(g, 4), now()
        FROM generate_series(1, %(n)s) g""", {"n": queued})
    build_in_flight(conn)


def build_in_flight(conn: psycopg.Connection) -> None:
    """32 runs a -> b: a running under a lease, b pending on it; 10 waits; their events."""
    run = RUN_ID.format(f"{FLIGHT_BASE} + g")
    conn.execute(f"""
        INSERT INTO dagq.runs (id, tenant, workflow, spec, fingerprint, nodes_total,
                               nodes_remaining, status, started_at)
        SELECT {run}, 't' || mod(g, 4), 'dag', '{{}}', 'f', 3, 3, 'running', now()
        FROM generate_series(1, 32) g""")
    conn.execute(f"""
        INSERT INTO dagq.node_tasks (run_id, node_key, executor, status, tenant, queued_at,
                                     started_at, attempts, lease_owner, lease_expires_at,
                                     dependents)
        SELECT {run}, 'a', 'builtin.noop', 'running', 't' || mod(g, 4), now(), now(), 1, 'w',
               now() + interval '30 seconds', '{{b}}'
        FROM generate_series(1, 32) g""")
    conn.execute(f"""
        INSERT INTO dagq.node_tasks (run_id, node_key, executor, status, tenant, depends_on,
                                     deps_remaining)
        SELECT {run}, 'b', 'builtin.noop', 'pending', 't' || mod(g, 4), '{{a}}', 1
        FROM generate_series(1, 32) g""")
    conn.execute(f"""
        INSERT INTO dagq.node_tasks (run_id, node_key, executor, status, tenant, wait_spec,
                                     wait_until, started_at)
        SELECT {run}, 'w', 'dagq.wait', 'waiting', 't' || mod(g, 4), '{{"sleep_s": 60}}',
               now() + make_interval(secs => g), now()
        FROM generate_series(1, 10) g""")
    conn.execute(f"""
        INSERT INTO dagq.run_events (run_id, node_key, type, attempt)
        SELECT {run}, 'a', 'node_started', 1 FROM generate_series(1, 32) g""")


class Database:
    """A database of the session's server, built into one state and moved on from it."""

    def __init__(self, server: pg.TestServer) -> None:
        self.server, self.url, self.conn, self.state = server, "", None, ""

    def reach(self, state: str) -> psycopg.Connection:
        """This database in `state`: a, b and c share one build (each ANALYZE or VACUUM
        moves it on); a state already passed, or d, starts from a fresh database."""
        if self.conn is None or state < self.state or state == "d" or self.state == "d":
            self.close()
            self.url = self.server.new_database()
            self.conn = psycopg.connect(self.url, autocommit=True, row_factory=dict_row)
            # The states' statistics are made by the ANALYZE and VACUUM below, never by
            # autovacuum: on a loaded machine it analyzed the new rows before state a's
            # premise (no statistics yet) was checked.
            for table in ("node_tasks", "runs"):
                self.conn.execute(f"ALTER TABLE dagq.{table} SET (autovacuum_enabled = off)")
            if state == "d":
                build_history(self.conn, finished=200_000, queued=10)
            else:
                build_history(self.conn, finished=50_000, queued=20_000)
        tables = ", ".join(f"dagq.{t}" for t in HOT_TABLES)
        if state == "c":  # sets the visibility map, as autovacuum does
            self.conn.execute(f"VACUUM (ANALYZE) {tables}")
        elif state in ("b", "d"):
            self.conn.execute(f"ANALYZE {tables}")
        self.state = state
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.server.drop_database(self.url)
            self.conn = None


@pytest.fixture(scope="module")
def database(pg_server: pg.TestServer) -> Iterator[Database]:
    database = Database(pg_server)
    yield database
    database.close()


@pytest.fixture(scope="module", params=["a", "b", "c", "d"])
def state(request: pytest.FixtureRequest, database: Database) -> tuple[str, psycopg.Connection]:
    """The module's tests run state by state (pytest groups them by this fixture's
    parameter), so each state is built once per test process."""
    conn = database.reach(request.param)
    if request.param == "a":  # the premise: no statistics yet
        [row] = conn.execute("SELECT count(*) AS n FROM pg_stats WHERE schemaname = 'dagq' "
                             "AND tablename = ANY (%s)", (list(HOT_TABLES),)).fetchall()
        assert row["n"] == 0
    return request.param, conn


def hot_scans(plan: dict, found: list[tuple[str, str, str | None]] | None = None,
              ) -> list[tuple[str, str, str | None]]:
    """(alias, node type, index) of every scan of a hot table; a bitmap heap scan with
    the index of its bitmap index scan below (one, as in the plans seen)."""
    found = [] if found is None else found
    if plan.get("Relation Name") in HOT_TABLES and plan["Node Type"] != "ModifyTable":
        index = plan.get("Index Name")
        if plan["Node Type"] == "Bitmap Heap Scan":
            below = [p.get("Index Name") for p in plan.get("Plans", [])]
            index = below[0] if len(below) == 1 else None
        found.append((plan["Alias"], plan["Node Type"], index))
    for child in plan.get("Plans", []):
        hot_scans(child, found)
    return found


def plan_of(conn: psycopg.Connection, hot: Hot) -> dict:
    if hot.generic:
        [row] = generic_plan(conn, queries()[hot.name], json=True)
    else:
        row = conn.execute("EXPLAIN (FORMAT JSON) " + queries()[hot.name],
                           hot.arguments).fetchone()
    return row["QUERY PLAN"][0]["Plan"]


def in_flight(conn: psycopg.Connection) -> int:
    [row] = conn.execute("SELECT count(*) AS n FROM dagq.node_tasks WHERE status IN "
                         "('pending', 'queued', 'running', 'waiting')").fetchall()
    return row["n"]


def ident(hot: Hot) -> str:
    tenant = hot.arguments.get("tenant")
    return f"{hot.name}-{'generic' if hot.generic else 'custom'}" + (f"-{tenant}" if tenant else "")


@pytest.mark.parametrize("hot", HOT, ids=ident)
def test_hot_statement_keeps_its_plan(state, hot: Hot, request: pytest.FixtureRequest) -> None:
    name, conn = state
    if (name, hot.name) in KNOWN_FLIPS:
        request.applymarker(pytest.mark.xfail(strict=True, reason=KNOWN_FLIPS[name, hot.name]))
    plan = plan_of(conn, hot)
    shown = json.dumps(plan, indent=1)
    scans = hot_scans(plan)
    assert scans, shown
    for alias, node, index in scans:
        assert "Seq Scan" not in node, (alias, shown)
        assert alias in hot.indexes, (alias, node, index, shown)
        assert index in hot.indexes[alias], (alias, node, index, shown)
    bound = BASE_COST + COST_PER_ROW_IN_FLIGHT * in_flight(conn)
    assert plan["Total Cost"] <= bound, (plan["Total Cost"], bound, shown)


def test_list_runs_generic_plan_is_never_chosen(state, request: pytest.FixtureRequest,
                                                 ) -> None:
    """The API runs list_runs under plan_cache_mode auto, which takes the generic plan
    only when it is estimated no dearer than the custom ones. The generic plan sorts the
    whole of runs (the LIMIT and the filters are unknown), so it must stay dearer than
    the custom plan of the page the dashboard asks for; a workers' pool (generic plans
    forced) never runs it."""
    name, conn = state
    if (name, "list_runs generic") in KNOWN_FLIPS:
        request.applymarker(pytest.mark.xfail(strict=True,
                                              reason=KNOWN_FLIPS[name, "list_runs generic"]))
    [page] = [h for h in HOT if h.name == "list_runs" and h.arguments["tenant"] is None]
    custom = plan_of(conn, page)
    generic = plan_of(conn, Hot("list_runs", page.indexes))
    # Twice, not just dearer: the estimates move with each ANALYZE's sample.
    costs = generic["Total Cost"], custom["Total Cost"]
    assert costs[0] > 2 * costs[1], costs


def test_the_sweepers_analyze_pass_ends_the_unanalyzed_state(db_url: str, repo: Store) -> None:
    """Rows and no statistics (state a): the analyze pass analyzes exactly those tables,
    once; afterwards nothing is left to analyze."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        build_history(conn, finished=2_000, queued=200)
        conn.execute("SELECT pg_stat_force_next_flush()")  # PostgreSQL 15+
    deadline = time.monotonic() + 30
    analyzed: list[str] = []
    while time.monotonic() < deadline and "node_tasks" not in analyzed:
        analyzed += repo.maintenance.analyze_never_analyzed()  # stats arrive within ~1 s
        time.sleep(0.2)
    assert {"node_tasks", "runs"} <= set(analyzed), analyzed
    assert "node_tasks" not in repo.maintenance.analyze_never_analyzed()
