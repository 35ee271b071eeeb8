"""The client against real processes: `python -m dagq.api` (uvicorn), a worker and the
CLI. The CLI's client mode (DAGQ_URL) runs with a database URL that points nowhere, so
any database access would fail it; events() follows a run that real workers execute
through a proxy that the test cuts twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from dagq import Client, service
from dagq.client import RetryPolicy
from dagq.client.events import SseParser
from dagq.store import Store
from tests.harness.e2e import cli, start_api
from tests.harness.live_api import CutProxy
from tests.harness.procs import ROOT, WorkerFleet, free_port, wait_for, wait_for_run

pytestmark = pytest.mark.e2e

SLOW_CHAIN = {"name": "slow-chain", "nodes": {
    "fetch": {"executor": "builtin.sleep", "params": {"seconds": 0.2}},
    "parse": {"executor": "builtin.echo", "depends_on": ["fetch"]},
    "think": {"executor": "builtin.sleep", "depends_on": ["parse"], "params": {"seconds": 0.2}},
    "answer": {"executor": "builtin.merge", "depends_on": ["think"]},
}}


def test_cli_client_mode_submit_wait_runs_and_show(fleet: WorkerFleet, repo: Store,
                                                   tmp_path: Path) -> None:
    url = start_api(fleet)
    fleet.start(threads=2)
    key = service.create_api_key(repo, "acme")
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps(SLOW_CHAIN))

    done = cli(tmp_path, url, key, "submit", str(flow), "--inputs", '{"q": 1}', "--wait")
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().splitlines()[-1]
    assert f"submitted: run {run_id}" in done.stderr
    assert "4/4 nodes" in done.stderr and f"run {run_id} succeeded" in done.stderr
    run = repo.runs.get_run(uuid.UUID(run_id))
    assert run.status == "succeeded" and run.tenant == "acme" and run.inputs == {"q": 1}

    again = cli(tmp_path, url, key, "submit", str(flow), "--event-key", "k1")
    assert again.returncode == 0 and "submitted: run" in again.stderr
    same = cli(tmp_path, url, key, "submit", str(flow), "--event-key", "k1")
    assert "already submitted (same event key)" in same.stderr
    assert same.stdout.strip() == again.stdout.strip()
    last = cli(tmp_path, url, key, "submit", str(flow))
    newest = [again.stdout.strip(), last.stdout.strip()]
    for other in newest:
        wait_for_run(repo, uuid.UUID(other))

    listed = cli(tmp_path, url, key, "runs", "--limit", "2")
    assert listed.returncode == 0, listed.stderr
    assert "2 run(s), newest first" in listed.stdout
    assert all(other in listed.stdout for other in newest) and run_id not in listed.stdout
    succeeded = cli(tmp_path, url, key, "runs", "--status", "succeeded")
    assert "3 run(s)" in succeeded.stdout and run_id in succeeded.stdout
    assert "0 run(s)" in cli(tmp_path, url, key, "runs", "--status", "failed").stdout

    shown = cli(tmp_path, url, key, "run", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert f"run {run_id}" in shown.stdout and "tenant acme" in shown.stdout
    for node in SLOW_CHAIN["nodes"]:
        assert node in shown.stdout


def test_cli_client_mode_failures_and_errors(fleet: WorkerFleet, repo: Store,
                                            tmp_path: Path) -> None:
    url = start_api(fleet)
    fleet.start(threads=2)
    wait_for(lambda: "test.fatal" in repo.fleet.known_executors(), 60, "the worker to register")
    key = service.create_api_key(repo, "acme")
    flow = tmp_path / "fails.json"
    flow.write_text(json.dumps({"name": "fails", "nodes": {
        "a": {"executor": "builtin.noop"},
        "b": {"executor": "test.fatal", "depends_on": ["a"]}}}))
    failed = cli(tmp_path, url, key, "submit", str(flow), "--wait")
    assert failed.returncode == 1, failed.stderr
    assert "failed" in failed.stderr and "this input can never work" in failed.stderr

    unknown = cli(tmp_path, url, key, "run", "show", str(uuid.uuid4()))
    assert unknown.returncode == 1 and unknown.stderr.startswith("dagq: error: ")
    assert "not found" in unknown.stderr and "Traceback" not in unknown.stderr
    denied = cli(tmp_path, url, "wrong-key", "runs")
    assert denied.returncode == 1 and "dagq: error: " in denied.stderr
    assert "key" in denied.stderr.lower() and "Traceback" not in denied.stderr
    cycle = tmp_path / "cycle.json"
    cycle.write_text(json.dumps({"name": "cycle", "nodes": {
        "a": {"executor": "builtin.noop", "depends_on": ["b"]},
        "b": {"executor": "builtin.noop", "depends_on": ["a"]}}}))
    invalid = cli(tmp_path, url, key, "submit", str(cycle))
    assert invalid.returncode == 2 and "cycle" in invalid.stderr
    tenant = cli(tmp_path, url, key, "submit", str(flow), "--tenant", "other")
    assert tenant.returncode == 2 and "DAGQ_API_KEY" in tenant.stderr
    down = cli(tmp_path, f"http://127.0.0.1:{free_port()}", key, "runs")
    assert down.returncode == 1 and "dagq: error: " in down.stderr
    assert "Traceback" not in down.stderr
    bad_url = cli(tmp_path, "localhost:8000", key, "runs")
    assert bad_url.returncode == 2 and "DAGQ_URL" in bad_url.stderr
    assert repo.runs.list_runs(tenant=None, status=None, workflow=None, limit=10)[0].workflow \
        == "fails"  # the invalid submissions stored nothing


def test_events_from_real_workers_survive_cut_connections(fleet: WorkerFleet,
                                                          repo: Store) -> None:
    url = start_api(fleet)
    key = service.create_api_key(repo, "acme")
    proxy = CutProxy(int(url.rsplit(":", 1)[1]))
    seen = []
    try:
        with Client(proxy.url, key, retry_policy=RetryPolicy(initial_s=0.05)) as client:
            run_id = client.submit(SLOW_CHAIN).run_id
            fleet.start(threads=2)
            for event in client.events(run_id):
                seen.append(event)
                if event.type == "node_started" and event.node_key in ("fetch", "think"):
                    proxy.cut()  # mid-stream, while the worker keeps going
            stored = list(client.events(run_id, follow=False))
    finally:
        proxy.close()
    assert [e.id for e in seen] == [e.id for e in stored]
    assert seen[-1].type == "run_succeeded" and proxy.cuts == 2
    assert wait_for_run(repo, run_id).status == "succeeded"


def read_sse(url: str, headers: dict[str, str] | None = None) -> list:
    parser = SseParser()
    with httpx.stream("GET", url, headers=headers, timeout=60) as response:
        assert response.status_code == 200, response.read()
        return [m for m in map(parser.feed, [*response.iter_lines(), ""]) if m is not None]


def test_the_starlette_example_streams_a_run_per_request(fleet: WorkerFleet, repo: Store,
                                                        sql, tmp_path: Path) -> None:
    api_url = start_api(fleet)
    fleet.start(threads=2)
    key = service.create_api_key(repo, "web")
    port = free_port()
    log = open(tmp_path / "example.log", "wb")  # noqa: SIM115 - the process owns it
    env = {**os.environ, "DAGQ_URL": api_url, "DAGQ_API_KEY": key, "PYTHONPATH": str(ROOT)}
    example = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "starlette_app.py"), "--port", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    fleet.procs.append(example)  # stopped with the fleet
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(base, timeout=2).status_code == 200
        except httpx.TransportError:
            return example.poll() is not None

    wait_for(up, 60, "the example app")
    assert example.poll() is None, (tmp_path / "example.log").read_text()
    assert "EventSource" in httpx.get(base).text
    ask = f"{base}/ask?question=refund%3F&request_id=r1"
    messages = read_sse(ask)
    events, done = messages[:-1], messages[-1]
    assert done.event == "done" and json.loads(done.data)["status"] == "succeeded"
    assert [json.loads(m.data)["type"] for m in events][-1] == "run_succeeded"
    ids = [int(m.id) for m in events]
    assert ids == sorted(set(ids))
    # The browser reconnecting: the same request id is the same run, resumed after its id.
    resumed = read_sse(ask, {"Last-Event-ID": str(ids[2])})
    assert [int(m.id) for m in resumed[:-1]] == ids[3:] and resumed[-1].event == "done"
    assert sql.execute("SELECT count(*) AS n FROM dagq.runs").fetchone()["n"] == 1
    assert httpx.get(f"{base}/ask?question=x").status_code == 400
