"""Executors that must not or cannot run, on real worker processes (issue 12): the test
executors are off by default, builtin.http refuses internal addresses, a worker whose
DAGQ_ACTOR_MODULES cannot be imported fails in one line and is restarted ever more
slowly, and `dagq submit --wait` says when no live worker serves a run."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from dagq import service
from dagq.runtime.procs import EXIT_CANNOT_START
from tests.harness.procs import ROOT, free_port, wait_for, wait_for_run
from tests.harness.specs import spec

pytestmark = pytest.mark.e2e


def worker_row(sql, proc) -> dict | None:
    return sql.execute("SELECT executors, status FROM dagq.workers WHERE pid = %s",
                       (proc.pid,)).fetchone()


def test_test_executors_are_off_unless_switched_on(repo, fleet, sql) -> None:
    off = fleet.start(DAGQ_TEST_EXECUTORS="off")
    row = wait_for(lambda: worker_row(sql, off), 60, "the worker to register")
    assert "builtin.noop" in row["executors"]
    assert not {"builtin.fail", "builtin.crash"} & set(row["executors"])
    # A crash node accepted before the switch went off is never leased by this worker.
    crash = repo.submissions.submit_run(tenant="t", spec=spec(
        {"c": {"executor": "builtin.crash", "params": {"times": 5}}}, name="crash")).run_id
    ok = repo.submissions.submit_run(
        tenant="t", spec=spec({"n": {"executor": "builtin.noop"}})).run_id
    assert wait_for_run(repo, ok).status == "succeeded", fleet.logs()
    assert off.poll() is None, fleet.logs()
    assert repo.runs.get_run(crash).nodes[0].status == "queued"
    [warning] = service.get_run(repo, crash).warnings
    assert warning.executor == "builtin.crash" and warning.queue == "default"
    repo.runs.cancel_run(crash, "t")

    on = fleet.start()  # the suite's workers run with DAGQ_TEST_EXECUTORS=on
    row = wait_for(lambda: worker_row(sql, on), 60, "the second worker to register")
    assert {"builtin.fail", "builtin.crash"} <= set(row["executors"])


def test_builtin_http_on_a_worker_refuses_the_apis_own_metrics(repo, fleet) -> None:
    port = free_port()
    fleet.start_api(port)
    wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 60, "the API")
    worker = fleet.start()
    wf = spec({"h": {"executor": "builtin.http", "max_attempts": 3,
                     "params": {"url": f"http://127.0.0.1:{port}/metrics"}}}, name="ssrf")
    run = wait_for_run(repo, repo.submissions.submit_run(tenant="t", spec=wf).run_id)
    node = run.nodes[0]
    assert run.status == "failed" and node.attempts == 1, fleet.logs()  # for good
    assert node.error["type"].endswith("AddressRefused")
    assert f"127.0.0.1:{port}" not in node.error["message"]  # names the address, not the URL
    assert "127.0.0.1: a loopback address" in node.error["message"]
    assert "DAGQ_HTTP_ALLOW" in node.error["message"]
    assert node.outputs is None

    fleet.stop(worker)
    fleet.start(DAGQ_HTTP_ALLOW="127.0.0.1")  # the operator allows the local API
    wf = spec({"h": {"executor": "builtin.http",
                     "params": {"url": f"http://127.0.0.1:{port}/healthz"}}}, name="allowed")
    run = wait_for_run(repo, repo.submissions.submit_run(tenant="t", spec=wf).run_id)
    assert run.status == "succeeded", fleet.logs()
    assert run.nodes[0].outputs == {"status": "ok"}


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_an_unimportable_actor_module_fails_the_start_in_one_line(fleet, tmp_path) -> None:
    broken = tmp_path / "mods" / "broken_tasks.py"
    broken.parent.mkdir()
    broken.write_text('"""A user module with a missing dependency."""\n\n'
                      "import dagq_no_such_dependency  # noqa\n")
    cases = {
        "tests.e2e.no_such_module":
            "cannot import 'tests.e2e.no_such_module' (DAGQ_ACTOR_MODULES): "
            "ModuleNotFoundError: No module named 'tests.e2e.no_such_module'",
        "broken_tasks":
            "cannot import 'broken_tasks' (DAGQ_ACTOR_MODULES): ModuleNotFoundError: No "
            f"module named 'dagq_no_such_dependency' ({broken}:3)",
    }
    for module, expected in cases.items():
        proc = fleet.start(DAGQ_ACTOR_MODULES=module,
                           PYTHONPATH=f"{ROOT}:{broken.parent}")
        assert proc.wait(60) == EXIT_CANNOT_START
        log = Path(fleet.tmp / f"worker-{len(fleet.procs) - 1}.log").read_text()
        lines = [line for line in log.splitlines() if line.strip()]
        assert len(lines) == 1, log
        assert "Traceback" not in log and lines[0].endswith(f"worker cannot start: {expected}")


def test_dagq_worker_exits_when_a_worker_cannot_start(fleet) -> None:
    """A configuration error at start is not transient (issue 27, point 7): `dagq worker`
    stops with the worker's one line instead of restarting it forever. (A module broken
    later keeps the back-off: tests/e2e/test_cli_cannot_start.py.)"""
    group = fleet.start_command("worker", "--processes", "1",
                                DAGQ_ACTOR_MODULES="tests.e2e.no_such_module")
    assert group.wait(90) == 1
    lines = [line for line in fleet.logs().splitlines() if line.strip()]
    assert lines[-1] == ("dagq: error: worker-1 cannot start: cannot import "
                         "'tests.e2e.no_such_module' (DAGQ_ACTOR_MODULES): "
                         "ModuleNotFoundError: No module named 'tests.e2e.no_such_module'")
    assert "trying again" not in fleet.logs() and "Traceback" not in fleet.logs()


def test_submit_wait_says_when_no_live_worker_serves_the_run(repo, db_url, fleet,
                                                             tmp_path) -> None:
    flow = tmp_path / "flow.json"
    flow.write_text('{"name": "lonely", "nodes": {"a": {"executor": "builtin.noop"}}}')
    err = tmp_path / "submit.err"
    with open(err, "wb") as sink:
        submit = subprocess.Popen(
            [sys.executable, "-c", "from dagq.cli import main; raise SystemExit(main())",
             "submit", str(flow), "--wait"],
            cwd=ROOT, env=fleet.env(), stdout=subprocess.PIPE, stderr=sink)
    try:
        expected = "waiting: no live worker serves executor builtin.noop on queue default"
        wait_for(lambda: expected in err.read_text(), 60, "the --wait warning")
        [run] = repo.runs.list_runs(tenant=None, workflow="lonely")
        fleet.start()  # a worker comes: the run finishes, and --wait says it is served
        assert submit.wait(60) == 0, err.read_text()
        assert uuid.UUID(submit.stdout.read().decode().split()[-1]) == run.run_id
    finally:
        if submit.poll() is None:
            submit.kill()
            submit.wait()
    text = err.read_text()
    assert text.count(expected) == 1  # said once, not at every poll
    assert f"run {run.run_id} succeeded" in text and "Traceback" not in text
