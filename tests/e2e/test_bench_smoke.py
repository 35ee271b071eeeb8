"""`dagq bench --quick` runs every phase end to end and reports every figure.

No speed is asserted: the figures depend on the machine. The bench gets the per-test
database's server through DAGQ_DATABASE_URL, so it makes a scratch database there
instead of starting a second Postgres.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from dagq.bench.procstat import children_of

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _dagq() -> list[str]:
    script = Path(sys.executable).parent / "dagq"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from dagq.cli import main; sys.exit(main())"]


def _number(figures: dict[str, Any], *path: str) -> float:
    value: Any = figures
    for key in path:
        assert isinstance(value, dict) and key in value, f"missing figure {'.'.join(path)}"
        value = value[key]
    assert isinstance(value, int | float) and not isinstance(value, bool), \
        f"{'.'.join(path)} is {value!r}"
    assert value >= 0, f"{'.'.join(path)} is negative"
    return float(value)


def test_bench_quick_reports_every_figure(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = dict(os.environ, DAGQ_DATABASE_URL=db_url, DAGQ_LOG_LEVEL="WARNING")
    done = subprocess.run(
        [*_dagq(), "bench", "--quick", "--json", str(out)], cwd=ROOT, env=env,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    figures = json.loads(out.read_text())

    assert _number(figures, "ceiling", "single", "jobs_per_s") > 0
    assert _number(figures, "ceiling", "batch", "jobs_per_s") > 0
    assert _number(figures, "flat", "nodes_per_s") > 0
    assert _number(figures, "flat", "nodes") == figures["config"]["sizes"]["flat_runs"]
    assert _number(figures, "dag", "node_tasks_per_s") > 0
    assert _number(figures, "dag", "runs_per_s") > 0
    assert _number(figures, "dag", "node_tasks") == 12 * figures["config"]["sizes"]["dag_runs"]
    for kind in ("single", "dag"):
        p50 = _number(figures, "latency", kind, "p50_ms")
        p99 = _number(figures, "latency", kind, "p99_ms")
        assert p50 <= p99
    for ratio in ("flat_vs_ceiling_single", "flat_vs_ceiling_batch",
                  "dag_vs_ceiling_single", "dag_vs_ceiling_batch"):
        assert _number(figures, "ratios", ratio) > 0
    for key in ("start_kb", "end_kb", "peak_kb"):
        assert _number(figures, "worker_rss", key) > 0
    repeat = figures["config"]["sizes"]["repeat"]
    assert repeat == 2  # --quick repeats each drain twice, so the spread path runs too
    for phase, figure in (("flat", "nodes_per_s"), ("dag", "node_tasks_per_s")):
        spread = figures[phase]["repeats"][figure]
        assert len(spread["values"]) == repeat
        assert spread["min"] <= spread["median"] <= spread["max"]
        assert spread["min"] <= figures[phase][figure] <= spread["max"]
    _assert_drain_costs(figures)
    assert "WAL/node" in done.stdout and "HOT share, node_tasks" in done.stdout
    sizes = figures["config"]["sizes"]
    many = figures["stream"]["many"]  # streamed chunks, delivered to SSE clients
    assert _number(figures, "stream", "many", "chunks") == sizes["stream_runs"] * sizes[
        "stream_chunks"]
    assert (many["lost"], many["out_of_order"], many["duplicates"]) == (0, 0, 0)
    assert _number(figures, "stream", "many", "p50_ms") <= _number(figures, "stream", "many",
                                                                    "p99_ms")
    assert _number(figures, "stream", "one_node", "chunks") == sizes["stream_burst"]
    assert _number(figures, "stream", "one_node", "chunks_per_s") > 0
    assert _number(figures, "waiting", "waiting_runs") == sizes["waiting_runs"]
    assert _number(figures, "waiting", "ratio_to_flat") > 0
    assert _number(figures, "subflows", "child_runs") == sizes["subflow_parents"] * 10
    assert _number(figures, "subflows", "mapped", "node_tasks_per_s") > 0
    assert _number(figures, "subflows", "inlined", "parent_p50_ms") > 0
    for clients in ("c50", "c200"):  # the front door under load, workers draining
        assert _number(figures, "api", clients, "submits_per_s") > 0
        assert figures["api"][clients]["errors"] == 0
        assert _number(figures, "api", clients, "p50_ms") <= _number(figures, "api", clients,
                                                                      "p99_ms")
        assert _number(figures, "api", clients, "vs_in_process") > 0
    assert figures["api"]["client"] in ("wrk", "httpx")
    _assert_deployed_front_door(figures["api"])
    assert figures["database"]["synchronous_commit"] == "on"
    assert figures["database"]["scratch"] is True
    assert "flat" in done.stdout and "ceiling" in done.stdout  # the table was printed


def _assert_deployed_front_door(api: dict[str, Any]) -> None:
    """The front door as `dagq up` deploys it was measured too: a real key accepted on
    every request (auth on: a refused one would count as an error), CPU per submit."""
    deployed = api["deployed"]
    assert deployed["processes"] == api["processes"]
    assert "auth on" in deployed["config"] and "auth off" in api["config"]
    for clients in ("c50", "c200"):
        assert _number(deployed, clients, "submits_per_s") > 0
        assert deployed[clients]["errors"] == 0
        assert _number(deployed, clients, "api_cpu_ms_per_submit") > 0
        assert _number(api, clients, "api_cpu_ms_per_submit") > 0
        assert _number(deployed, clients, "cpu_ms_per_submit") >= _number(
            deployed, clients, "api_cpu_ms_per_submit")
        assert _number(deployed, clients, "cpu_bound_submits_per_s") > 0


def test_bench_api_phase_alone_alternates_both_front_doors(db_url: str,
                                                            tmp_path: Path) -> None:
    """`--phase api`: the bench's front door and the deployed one, --repeat rounds of
    each, the spread of every round beside the median."""
    out = tmp_path / "bench.json"
    env = dict(os.environ, DAGQ_DATABASE_URL=db_url, DAGQ_LOG_LEVEL="WARNING",
               COLUMNS="250")  # the table's cells unwrapped
    done = subprocess.run(
        [*_dagq(), "bench", "--quick", "--phase", "api", "--repeat", "2", "--json", str(out)],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    api = json.loads(out.read_text())["api"]
    assert api["rounds"] == 2
    _assert_deployed_front_door(api)
    for side in (api, api["deployed"]):
        assert len(side["c50"]["repeats"]["submits_per_s"]["values"]) == 2
    assert "api as `dagq up`" in done.stdout and "CPU per submit" in done.stdout


def test_the_deployed_front_door_refuses_a_request_without_a_key(
        db_url: str, repo: Any, tmp_path: Path) -> None:
    """What the bench calls deployed is auth on: no key, 401; the bench's key, 201."""
    from dagq import service
    from dagq.bench.api_procs import DEPLOYED, ApiProcesses
    from dagq.spec.workflow import parse_spec

    repo.workflows.register_workflow(parse_spec(
        {"name": "front", "nodes": {"n": {"executor": "builtin.noop"}}}))
    key = service.create_api_key(repo, "front")
    with ApiProcesses(db_url, tmp_path, name="front", config=DEPLOYED) as base:
        body = {"workflow": "front", "inputs": {}}
        assert httpx.post(f"{base}/v1/runs", json=body, timeout=30).status_code == 401
        answer = httpx.post(f"{base}/v1/runs", json=body, timeout=30,
                            headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 201, answer.text
    assert (tmp_path / "front-sweeper.log").exists()  # the sweeper ran beside it


def _assert_drain_costs(figures: dict[str, Any]) -> None:
    """Each drain says what it cost per node: WAL, HOT share of the hot tables' updates,
    Postgres and worker CPU, and its fraction of the 100 rows/statement ceiling."""
    local = not os.environ.get("DAGQ_TEST_DATABASE_URL")  # the harness' embedded server
    for phase in ("flat", "dag"):
        costs = figures[phase]["costs"]
        assert _number(costs, "wal_records_per_node") > 1  # a node is never one record
        assert _number(costs, "wal_bytes_per_node") > 100
        assert _number(costs, "wal_fpi_per_node") >= 0
        assert _number(costs, "worker_cpu_ms_per_node") >= 0
        if local or costs["postgres_cpu_ms_per_node"] is not None:
            assert _number(costs, "postgres_cpu_ms_per_node") > 0
        for table in ("node_tasks", "runs"):  # every node leased and finished: updates
            assert _number(costs, "hot", table, "updates_per_node") > 0
            assert 0 <= _number(costs, "hot", table, "ratio") <= 1
        assert _number(costs, "ceiling_fraction") > 0
        assert len(costs["repeats"]["wal_records_per_node"]["values"]) == 2


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(") ", 1)[1][:1] != "Z"


def test_ctrl_c_stops_the_workers_and_drops_the_scratch_database(
    db_url: str, sql: Any
) -> None:
    env = dict(os.environ, DAGQ_DATABASE_URL=db_url, DAGQ_LOG_LEVEL="WARNING")
    bench = subprocess.Popen(
        [*_dagq(), "bench", "--quick"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while not workers and time.monotonic() < deadline and bench.poll() is None:
            workers = children_of(bench.pid)
            time.sleep(0.02)
        assert workers, "the bench never started its worker processes"
        time.sleep(0.3)
        bench.send_signal(signal.SIGINT)
        _, stderr = bench.communicate(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    assert bench.returncode == 130, stderr
    assert not [pid for pid in workers if _alive(pid)], "worker processes outlived the bench"
    left = sql.execute("SELECT datname FROM pg_database WHERE datname LIKE 'dagq_bench_%'"
                       ).fetchall()
    assert left == []


def test_bench_compare_alternates_with_another_commit(db_url: str, tmp_path: Path) -> None:
    """`--compare REF` installs REF in a temporary worktree and venv, runs both sides
    alternately (here `--phase core`: the hot path's figures only) and prints the
    ratios; the worktree is gone afterwards."""
    out = tmp_path / "compare.json"
    env = dict(os.environ, DAGQ_DATABASE_URL=db_url, DAGQ_LOG_LEVEL="WARNING")
    done = subprocess.run(
        [*_dagq(), "bench", "--quick", "--phase", "core", "--compare", "HEAD", "--rounds",
         "1", "--json", str(out)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=400,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "this / ref" in done.stdout and "flat drain" in done.stdout
    assert "plain-actor drain" not in done.stdout  # no side ran that phase: no row
    sides = json.loads(out.read_text())
    assert set(sides) == {"this", "HEAD"}
    for runs in sides.values():
        assert len(runs) == 1 and _number(runs[0], "flat", "nodes_per_s") > 0
    # Its temporary worktree is removed again (others may come and go meanwhile).
    listed = subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=ROOT,
                            capture_output=True, text=True).stdout
    assert "/tmp/dagqc-" not in listed


def test_bench_compare_with_an_unknown_ref_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [*_dagq(), "bench", "--quick", "--compare", "no-such-ref-xyz"], cwd=ROOT,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1
    assert "no-such-ref-xyz" in done.stderr and "Traceback" not in done.stderr


def test_bench_dramatiq_phase_alone(db_url: str, tmp_path: Path) -> None:
    """`--phase dramatiq`: plain actors' sends (one by one, and a batched group), their
    drain by real workers, and idle send -> start."""
    out = tmp_path / "bench.json"
    env = dict(os.environ, DAGQ_DATABASE_URL=db_url, DAGQ_LOG_LEVEL="WARNING")
    done = subprocess.run(
        [*_dagq(), "bench", "--quick", "--phase", "dramatiq", "--json", str(out)], cwd=ROOT,
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    figures = json.loads(out.read_text())["dramatiq"]
    sends = figures["send"]["messages"]
    assert _number(figures, "send", "sends_per_s") > 0
    assert _number(figures, "group_send", "sends_per_s") > 0
    grouped = figures["group_send"]["messages"]
    assert _number(figures, "drain", "messages") == sends + grouped  # one by one, grouped
    assert _number(figures, "drain", "messages_per_s") > 0
    assert _number(figures, "latency", "samples") == 10
    assert _number(figures, "latency", "p50_ms") <= _number(figures, "latency", "p99_ms")
    assert "idle send -> start" in done.stdout
    assert _number(figures, "send_floor", "rows_per_s") > 0
    # Dramatiq + Redis beside it, on a private redis-server (scripts/test installs
    # Debian's); without one the bench says why instead.
    redis = figures["redis"]
    if shutil.which("redis-server") is None:
        assert "redis-server" in redis["skipped"]
        return
    for mode in ("redis_default", "redis_fsync_always"):
        assert _number(redis[mode], "send", "sends_per_s") > 0
        assert _number(redis[mode], "drain", "messages") == sends + grouped
        assert _number(redis[mode], "drain", "messages_per_s") > 0
    assert "Dramatiq + Redis (appendfsync always)" in done.stdout


def test_bench_via_proxy_reports_drains_5_ms_away(db_url: str, tmp_path: Path) -> None:
    """`dagq bench --quick --phase core --via proxy`: the drains with the workers 5 ms
    from Postgres each way, as ratios of the direct ones. No speed is asserted, only that
    the workers' path went through the proxy: a start takes at least one round trip."""
    out = tmp_path / "bench.json"
    env = dict(os.environ, DAGQ_DATABASE_URL=db_url, DAGQ_LOG_LEVEL="WARNING")
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from dagq.cli import main; sys.exit(main())",
         "bench", "--quick", "--phase", "core", "--repeat", "1", "--via", "proxy",
         "--json", str(out)], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    via = json.loads(out.read_text())["via_proxy"]
    assert via["delay_ms_each_way"] == 5
    assert via["flat_ratio"] > 0 and via["dag_ratio"] > 0
    assert via["latency"]["p50_ms"] >= 10
    assert "via proxy" in done.stdout
