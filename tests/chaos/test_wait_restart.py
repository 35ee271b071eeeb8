"""A durable timer survives a full restart (issue 16): workers, sweeper, API and
Postgres all stop while a wait node waits; after they come back, the timer (its time
reached through data: wait_until backdated) fires from the new sweeper and the run
finishes. Nothing of the wait lived in a process."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest

from tests.harness.procs import free_port, wait_for, wait_for_run

pytestmark = pytest.mark.chaos

TIMER = {"name": "nightly-retry", "nodes": {
    "plan": {"executor": "builtin.echo"},
    "later": {"wait": {"seconds": 3600}, "depends_on": ["plan"]},
    "retry": {"executor": "builtin.noop", "depends_on": ["later"]},
}}


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def _start(fleet, port: int) -> str:
    fleet.start(threads=2)
    fleet.start_sweeper()
    fleet.start_api(port)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _status(f"{base}/readyz") == 200, 60, "the API to be ready")
    return base


def _later(base: str, run_id: str) -> dict:
    run = httpx.get(f"{base}/v1/runs/{run_id}", timeout=10).json()
    return next(n for n in run["nodes"] if n["key"] == "later")


def test_a_timer_survives_a_restart_of_everything(pg_server, repo, fleet, db_url) -> None:
    if pg_server.embedded is None:
        pytest.skip("needs the embedded server (DAGQ_TEST_DATABASE_URL is set)")
    port = free_port()
    base = _start(fleet, port)
    created = httpx.post(f"{base}/v1/runs", json={"workflow": TIMER}, timeout=10)
    assert created.status_code == 201, created.text
    run_id = created.json()["run_id"]
    wait_for(lambda: _later(base, run_id)["status"] == "waiting", 30, "the timer to wait")
    before = _later(base, run_id)

    for proc in list(fleet.procs):
        assert fleet.stop(proc) == 0, fleet.logs()
    fleet.procs.clear()
    pg_server.embedded.stop_server()
    pg_server.embedded.start()

    base = _start(fleet, port)
    after = _later(base, run_id)
    assert (after["status"], after["wait_until"]) == ("waiting", before["wait_until"])
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE dagq.node_tasks SET wait_until = now() - interval '1 second' "
                     "WHERE run_id = %s AND node_key = 'later'", (run_id,))
    run = wait_for_run(repo, uuid.UUID(run_id), timeout=60)
    assert run.status == "succeeded", fleet.logs()
    assert {n.key: n.status for n in run.nodes} == {
        "plan": "succeeded", "later": "succeeded", "retry": "succeeded"}
