"""Issue 29 items 2 and 3 with real processes: Postgres with max_connections 40 behind
PgBouncer 1.18 in pool_mode=transaction, and more dagq processes than that server could
take directly (8 worker processes, the API, the sweeper: 71 connections at most by the
budget they print). Fan-out runs all succeed with every node run once; the LISTEN probe
warns when LISTEN goes through the pooler; DAGQ_LISTEN=off still completes runs.

Run alone with `-m pgbouncer`; skipped (with the reason) only when pgbouncer is not
installed. About 40 s in all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.harness.e2e import ready
from tests.harness.pgbouncer import example_settings, pgbouncer, require_pgbouncer, small_server
from tests.harness.procs import WorkerFleet, free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.pgbouncer]

MAX_CONNECTIONS = 40
ITEMS = 8
FANOUT = {
    "name": "fanout",
    "nodes": {
        "root": {"executor": "builtin.echo"},
        "each": {"executor": "builtin.echo", "depends_on": ["root"],
                 "map": {"dep": "root", "path": "run.items"}},
        **{f"side{i}": {"executor": "builtin.noop", "depends_on": ["root"]} for i in range(4)},
        "join": {"executor": "builtin.merge",
                 "depends_on": ["each", *(f"side{i}" for i in range(4))]},
    },
}
WARNING = "LISTEN goes through a transaction pooler"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(direct URL, URL through PgBouncer) of a migrated database on a server with
    max_connections 40; PgBouncer is configured as examples/deploy/pgbouncer.ini
    (transaction mode, at most 20 server sessions)."""
    require_pgbouncer()
    settings = example_settings()
    assert settings["pool_mode"] == "transaction" and settings["default_pool_size"] == "20"
    with small_server(tmp_path_factory.mktemp("pg40"), MAX_CONNECTIONS) as direct, \
            pgbouncer(direct, settings=settings) as bouncer:
        yield direct, bouncer.url(direct)


@pytest.fixture
def sql(servers: tuple[str, str]) -> Iterator[psycopg.Connection]:
    with psycopg.connect(servers[0], autocommit=True, row_factory=dict_row) as conn:
        yield conn


def start_api(fleet: WorkerFleet, **env: str) -> str:
    port = free_port()
    fleet.start_api(port, **env)
    return wait_ready(fleet, f"http://127.0.0.1:{port}")


def wait_ready(fleet: WorkerFleet, base: str) -> str:
    try:
        wait_for(lambda: ready(base), 60, "the API to be ready")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{fleet.logs()}") from None
    return base


def submit(base: str, count: int) -> list[uuid.UUID]:
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.post("/v1/workflows", json=FANOUT).status_code in (200, 201)
        replies = [client.post("/v1/runs", json={"workflow": "fanout",
                                                 "inputs": {"items": list(range(ITEMS))}})
                   for _ in range(count)]
    assert [r.status_code for r in replies] == [201] * count, replies[0].text
    return [uuid.UUID(r.json()["run_id"]) for r in replies]


def wait_all_finished(sql: psycopg.Connection, runs: list[uuid.UUID], fleet: WorkerFleet,
                      timeout: float = 120) -> int:
    """Wait for the runs to end; the most server connections seen meanwhile."""
    peak = [0]

    def done() -> bool:
        peak[0] = max(peak[0], sql.execute(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = "
            "'client backend'").fetchone()["n"])
        open_runs = sql.execute(
            "SELECT count(*) AS n FROM dagq.runs WHERE id = ANY(%s) AND status IN "
            "('queued', 'running')", (runs,)).fetchone()["n"]
        return open_runs == 0

    try:
        wait_for(done, timeout, f"{len(runs)} runs to finish")
    except AssertionError:
        raise AssertionError(fleet.logs()) from None
    return peak[0]


def assert_each_node_ran_once(sql: psycopg.Connection, runs: list[uuid.UUID]) -> None:
    statuses = sql.execute("SELECT status, count(*) AS n FROM dagq.runs WHERE id = ANY(%s) "
                           "GROUP BY status", (runs,)).fetchall()
    assert statuses == [{"status": "succeeded", "n": len(runs)}]
    # Every node that runs (not a map's parent, which only collects its items): one
    # attempt, started once, succeeded once.
    nodes = sql.execute(
        "SELECT t.status, t.attempts, (SELECT count(*) FILTER (WHERE e.type = "
        "'node_started') FROM dagq.run_events e WHERE e.run_id = t.run_id AND e.node_key = "
        "t.node_key) AS starts, (SELECT count(*) FILTER (WHERE e.type = 'node_succeeded') "
        "FROM dagq.run_events e WHERE e.run_id = t.run_id AND e.node_key = t.node_key) AS "
        "successes FROM dagq.node_tasks t WHERE t.run_id = ANY(%s) "
        "AND NOT (t.map_over IS NOT NULL AND t.parent_id IS NULL)", (runs,)).fetchall()
    assert len(nodes) == len(runs) * (2 + 4 + ITEMS)
    assert {(n["status"], n["attempts"], n["starts"], n["successes"]) for n in nodes} \
        == {("succeeded", 1, 1, 1)}


def test_eight_workers_api_and_sweeper_through_pgbouncer_with_listen_direct(
        servers: tuple[str, str], sql: psycopg.Connection, tmp_path: Path) -> None:
    direct, through = servers
    fleet = WorkerFleet(through, tmp_path)
    try:
        workers = fleet.start_command("worker", "--processes", "8", "--threads", "2",
                                      DAGQ_LISTEN_URL=direct)
        fleet.start_sweeper(DAGQ_LISTEN_URL=direct)
        base = start_api(fleet, DAGQ_LISTEN_URL=direct)
        wait_for(lambda: sql.execute("SELECT count(*) AS n FROM dagq.workers WHERE "
                                     "status = 'alive'").fetchone()["n"] >= 8,
                 60, "8 workers")
        runs = submit(base, 20)
        peak = wait_all_finished(sql, runs, fleet)
        assert_each_node_ran_once(sql, runs)
        assert peak <= MAX_CONNECTIONS
        print(f"most server connections seen: {peak} of {MAX_CONNECTIONS}")
        log = fleet.logs()
        assert workers.poll() is None, log
        # 8 x (2 threads + 4) pooled, through PgBouncer, + 8 LISTEN, direct.
        assert "connections: at most 56 to the server: 48 pooled (8 worker(s) x 6)" in log
        for bad in ("does not exist", "unsupported startup parameter", "too many clients",
                    WARNING):
            assert bad not in log, log
    finally:
        fleet.stop_all()


def test_the_listen_probe_warns_once_per_command_and_runs_still_complete(
        servers: tuple[str, str], sql: psycopg.Connection, tmp_path: Path) -> None:
    _, through = servers
    fleet = WorkerFleet(through, tmp_path)
    try:
        fleet.start_command("worker", "--processes", "2", "--threads", "2")
        port = free_port()
        fleet.start_command("api", "--port", str(port), DAGQ_AUTH="off")
        base = wait_ready(fleet, f"http://127.0.0.1:{port}")
        runs = submit(base, 3)
        wait_all_finished(sql, runs, fleet)
        assert_each_node_ran_once(sql, runs)
        # One line from `dagq worker` (for its 2 processes), one from `dagq api`; each
        # process logs it once too, and polls instead.
        log = fleet.logs()
        said = [line for line in log.splitlines() if line.startswith(f"dagq: {WARNING}")]
        assert len(said) == 2 and all("DAGQ_LISTEN_URL" in line for line in said), log
        logged = [line for line in log.splitlines() if WARNING in line and "WARNING" in line]
        assert len(logged) == 3, log  # once in each of 2 worker processes and the API
        assert ("at most 10 to the server: 10 pooled (1 API x 10) (no LISTEN connections: "
                "they would never fire)") in log
        listening = sql.execute(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE query ILIKE 'LISTEN dagq%%' "
            "AND query NOT ILIKE '%%probe%%' AND backend_type = 'client backend'"
        ).fetchone()["n"]
        assert listening == 0  # nothing LISTENs through the pooler
    finally:
        fleet.stop_all()


def test_listen_off_polls_and_completes_runs(
        servers: tuple[str, str], sql: psycopg.Connection, tmp_path: Path) -> None:
    _, through = servers
    fleet = WorkerFleet(through, tmp_path)
    try:
        fleet.start_command("worker", "--processes", "2", "--threads", "2",
                            DAGQ_LISTEN="off")
        base = start_api(fleet, DAGQ_LISTEN="off")
        runs = submit(base, 5)
        listening = sql.execute(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE query ILIKE 'LISTEN%%' "
            "AND query NOT ILIKE '%%probe%%' AND state = 'idle' "
            "AND backend_type = 'client backend'").fetchone()["n"]
        wait_all_finished(sql, runs, fleet)
        assert_each_node_ran_once(sql, runs)
        assert listening == 0
        log = fleet.logs()
        assert WARNING not in log and "DAGQ_LISTEN=off: no LISTEN connections" in log, log
        with httpx.Client(base_url=base, timeout=30) as client:  # SSE ends by polling
            events = client.get(f"/v1/runs/{runs[0]}/events")
        assert events.status_code == 200 and "run_succeeded" in events.text
    finally:
        fleet.stop_all()


def test_bench_via_pgbouncer_reports_ratios_and_polling_latency(
        db_url: str, tmp_path: Path) -> None:
    """`dagq bench --quick --phase core --via pgbouncer` (its scratch database on the
    session's server): the drains through PgBouncer as ratios of the direct ones, and
    submit -> start with LISTEN direct and off. No speed is asserted."""
    require_pgbouncer()
    out = tmp_path / "bench.json"
    env = dict(os.environ, DAGQ_DATABASE_URL=db_url, DAGQ_LOG_LEVEL="WARNING")
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from dagq.cli import main; sys.exit(main())",
         "bench", "--quick", "--phase", "core", "--repeat", "1", "--via", "pgbouncer",
         "--json", str(out)], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    via = json.loads(out.read_text())["via_pgbouncer"]
    assert via["flat_ratio"] > 0 and via["dag_ratio"] > 0
    assert via["latency_listen_direct"]["samples"] == via["latency_listen_off"]["samples"] > 0
    assert via["latency_listen_off"]["p50_ms"] > 0
    assert "via pgbouncer" in done.stdout and "DAGQ_LISTEN=off" in done.stdout
