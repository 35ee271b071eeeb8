"""A rolling upgrade (issue 29, point 4; docs/upgrading.md): the previous release's API,
worker and sweeper keep working while the new release's `dagq db migrate` changes the
schema under them and the new processes roll in beside them.

The previous release is the last landed commit before issue 29 (tests/harness/
previous_release.py), run from its own source tree with this checkout's interpreter. Each
run crosses the two releases: its root and aggregate are on the `default` queue, its
middles on `legacy`, which after the roll only the previous release's worker serves.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.harness import previous_release
from tests.harness.pg import empty_database
from tests.harness.previous_release import PREVIOUS_LATEST_MIGRATION, PreviousRelease
from tests.harness.procs import ROOT, WorkerFleet, free_port, wait_for

pytestmark = pytest.mark.e2e

WORKFLOW = {
    "name": "rolling",
    "nodes": {
        "root": {"executor": "builtin.echo"},
        **{f"m{i}": {"executor": "builtin.sleep", "params": {"seconds": 0.2},
                     "depends_on": ["root"], "queue": "legacy"} for i in range(3)},
        "agg": {"executor": "builtin.merge", "depends_on": ["m0", "m1", "m2"]},
    },
}
PER_BATCH = 8


@pytest.fixture
def empty_url(pg_server) -> Iterator[str]:
    """A database with no dagq schema: the previous release creates it."""
    with empty_database(pg_server, f"dagq_test_rolling_{os.getpid()}") as url:
        yield url


@pytest.fixture
def previous(empty_url: str, tmp_path: Path) -> Iterator[PreviousRelease]:
    if not previous_release.available():
        pytest.skip(f"this clone lacks the previous release {previous_release.PREVIOUS_RELEASE}"
                    " (a shallow clone): git fetch --unshallow")
    release = PreviousRelease(previous_release.materialize(tmp_path / "previous"),
                              empty_url, tmp_path)
    yield release
    release.stop_all()


def new_dagq(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAGQ_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", "from dagq.cli import main; raise SystemExit(main())", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


def submit_batch(api: str, batch: str) -> list[str]:
    ids = []
    with httpx.Client(base_url=api, timeout=30) as client:
        for i in range(PER_BATCH):
            answer = client.post("/v1/runs", json={
                "workflow": "rolling", "inputs": {"batch": batch, "i": i},
                "event_key": f"{batch}-{i}"})
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["run_id"])
    return ids


def wait_api(url: str) -> str:
    def up() -> bool:
        try:
            return httpx.get(url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 60, f"the API at {url}")
    return url


def declared(url: str, queue: str) -> bool:
    """Whether a worker has declared `queue` (a node naming it is refused before)."""
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT EXISTS (SELECT FROM dagq.workers WHERE %s = ANY(queues))",
                            (queue,)).fetchone()[0]


def applied_migrations(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT max(version) FROM dagq.schema_migrations").fetchone()[0]


def test_the_previous_release_runs_on_through_a_rolling_upgrade(
        previous: PreviousRelease, empty_url: str, tmp_path: Path) -> None:
    assert previous.imports_itself().is_relative_to(previous.pythonpath)
    # The deployment as it was: the previous release's schema and processes.
    migrated = previous.run("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert applied_migrations(empty_url) == PREVIOUS_LATEST_MIGRATION
    old_port = free_port()
    old_api = previous.start("api", "-m", "dagq.api", "--host", "127.0.0.1",
                             "--port", str(old_port))
    old_worker = previous.start("worker", "-m", "dagq.workers", "--threads", "4",
                                "--queues", "default,legacy")
    old_sweeper = previous.start("sweeper", "-m", "dagq.sweeper",
                                 DAGQ_SWEEP_INTERVAL_S="0.5")
    old = wait_api(f"http://127.0.0.1:{old_port}")
    wait_for(lambda: declared(empty_url, "legacy"), 60, "the old worker to declare its queues")
    registered = httpx.post(old + "/v1/workflows", json=WORKFLOW, timeout=30)
    assert registered.status_code == 201, registered.text
    runs = submit_batch(old, "before")

    # Step 2 of docs/upgrading.md: the new release migrates, under the running processes.
    migrated = new_dagq("db", "migrate", url=empty_url)
    assert migrated.returncode == 0, migrated.stderr
    assert applied_migrations(empty_url) > PREVIOUS_LATEST_MIGRATION
    runs += submit_batch(old, "after-migrate")

    # Step 3: the new processes roll in beside the old ones, which keep serving.
    fleet = WorkerFleet(empty_url, tmp_path)
    try:
        new_port = free_port()
        fleet.start_api(new_port)
        fleet.start(threads=4, queues="default")
        fleet.start_sweeper()
        new = wait_api(f"http://127.0.0.1:{new_port}")
        # An old worker host restarts before its upgrade: it checks the newer schema,
        # finds it declared compatible, and serves the queue only it serves now.
        old_worker.terminate()
        assert old_worker.wait(30) == 0, previous.log_tail()
        restarted = previous.start("worker", "-m", "dagq.workers", "--threads", "4",
                                   "--queues", "legacy")
        runs += submit_batch(new, "new-api")
        runs += submit_batch(old, "old-api")
        _assert_all_succeeded(empty_url, runs, fleet, previous,
                              watch=[old_api, old_sweeper, restarted])
        _assert_both_apis_read_every_run(old, new, runs)
    finally:
        fleet.stop_all()


def _assert_all_succeeded(url: str, runs: list[str], fleet: WorkerFleet,
                          previous: PreviousRelease,
                          watch: list[subprocess.Popen[bytes]]) -> None:
    """Every run ends succeeded, while none of the previous release's processes exits."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        def all_ended() -> bool:
            exited = [proc.args for proc in watch if proc.poll() is not None]
            assert not exited, f"exited: {exited}\n{previous.log_tail()}"
            open_runs = conn.execute(
                "SELECT count(*) AS n FROM dagq.runs WHERE id = ANY(%s::uuid[]) "
                "AND status NOT IN ('succeeded', 'failed', 'cancelled', 'partial_succeeded')",
                (runs,)).fetchone()["n"]
            return open_runs == 0

        wait_for(all_ended, 120, "every run of both releases to end")
        statuses = conn.execute(
            "SELECT status, count(*) AS n FROM dagq.runs WHERE id = ANY(%s::uuid[]) "
            "GROUP BY status", (runs,)).fetchall()
        assert {r["status"]: r["n"] for r in statuses} == {"succeeded": len(runs)}, (
            fleet.logs() + previous.log_tail())
        # Every node ran to success exactly once: no attempt lost or repeated by the mix.
        nodes = conn.execute(
            "SELECT count(*) AS n, count(*) FILTER (WHERE attempts = 1) AS first "
            "FROM dagq.node_tasks WHERE run_id = ANY(%s::uuid[]) AND status = 'succeeded'",
            (runs,)).fetchone()
        assert nodes == {"n": len(runs) * 5, "first": len(runs) * 5}


def _assert_both_apis_read_every_run(old: str, new: str, runs: list[str]) -> None:
    for base in (old, new):
        with httpx.Client(base_url=base, timeout=30) as client:
            for run_id in runs:
                answer = client.get(f"/v1/runs/{run_id}")
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert body["status"] == "succeeded"
                assert body["outputs"]["agg"] == {"slept_s": 0.2}
