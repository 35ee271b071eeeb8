"""Ctrl-C while a node runs (issue 27, point 6): a planned stop is not a failure.

The first Ctrl-C stops leasing, says what still runs, and lets it finish within
DAGQ_SHUTDOWN_GRACE_S; at the end of the grace, or on a second Ctrl-C, the running
attempts are handed back without charging an attempt (`node_released`, queued again at
once) and the process exits. Ctrl-C in a terminal signals the whole process group (the
`dagq` parent and its children at once); `kill -INT` signals the parent only: both are
tried, for `dagq up`, `dagq worker` and a worker process on its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dagq.store import Store
from tests.harness.e2e import dump_stacks, group_members
from tests.harness.procs import ROOT, free_port, wait_for, wait_for_run
from tests.harness.specs import spec

pytestmark = pytest.mark.e2e

# A stop that hands back at once takes a second or two; the grace in the tests that
# hurry is far longer than this, so a stop within it was not a grace running out.
QUICK_STOP_S = 12.0
LONG_GRACE = "120"
REPORT = "stopping: waiting up to"


def up_env(db_url: str, **extra: str) -> dict[str, str]:
    return dict(os.environ, DAGQ_DATABASE_URL=db_url, DAGQ_AUTH="off", DAGQ_LOG_LEVEL="INFO",
                PYTHONPATH=str(ROOT), **extra)


def start_up(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        up = subprocess.Popen(
            [sys.executable, "-c", "from dagq.cli import main; raise SystemExit(main())",
             "up", "--workers", "1", "--threads", "2", "--port", str(free_port())],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as in a terminal
        )
    wait_for(lambda: "serving queues" in log_path.read_text(errors="replace"), 90,
             "dagq up's worker to serve")
    return up


def ensure_stopped(proc: subprocess.Popen[bytes]) -> None:
    if group_members(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def wait_exit(proc: subprocess.Popen[bytes], timeout: float, log_path: Path) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stuck = dump_stacks(proc.pid)
        pytest.fail(f"still running {timeout:.0f}s after the stop; alive: {stuck}\n"
                    f"{log_path.read_text(errors='replace')[-8000:]}")


def submit_sleeper(repo: Store, seconds: float, **node: object) -> object:
    wf = spec({"long": {"executor": "builtin.sleep", "params": {"seconds": seconds}, **node}})
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    wait_for(lambda: repo.runs.get_run(run_id).nodes[0].status == "running", 60, "the node to run")
    return run_id


def assert_handed_back(repo: Store, sql, run_id) -> None:
    """Queued again, its attempt not charged: a `node_released`, no retry, no failure."""
    node = repo.runs.get_run(run_id).nodes[0]
    assert (node.status, node.attempts, node.lease_owner) == ("queued", 0, None), node
    kinds = [(r["type"], r["attempt"]) for r in sql.execute(
        "SELECT type, attempt FROM dagq.run_events WHERE run_id = %s AND node_key = 'long' "
        "ORDER BY id", (run_id,)).fetchall()]
    assert kinds == [("node_queued", 0), ("node_started", 1), ("node_released", 1)], kinds


def test_ctrl_c_with_a_grace_of_1s_hands_the_node_back_uncharged(
        db_url: str, repo: Store, sql, tmp_path: Path) -> None:
    log_path = tmp_path / "up.log"
    up = start_up(up_env(db_url, DAGQ_SHUTDOWN_GRACE_S="1"), log_path)
    try:
        run_id = submit_sleeper(repo, 10, max_attempts=1)
        time.sleep(2)  # the node runs for 2 s (of its 10)
        os.killpg(up.pid, signal.SIGINT)  # Ctrl-C
        stopped_at = time.monotonic()
        assert wait_exit(up, 30, log_path) == 0
        took = time.monotonic() - stopped_at
        text = log_path.read_text(errors="replace")
        assert took < 8, f"dagq up took {took:.1f}s to stop\n{text[-4000:]}"
        assert "did not stop" not in text, text[-4000:]
        assert f"run {run_id} node 'long'" in text, text[-4000:]  # said what still ran
        assert "handed back 1 node(s)" in text, text[-4000:]
        assert_handed_back(repo, sql, run_id)
    finally:
        ensure_stopped(up)
    # A restarted stack runs it on its first charged attempt (of 1: a stop that charged
    # it would have left none).
    again_log = tmp_path / "up-again.log"
    up = start_up(up_env(db_url), again_log)
    try:
        run = wait_for_run(repo, run_id, timeout=60)
        assert run.status == "succeeded", run
        assert run.nodes[0].attempts == 1
        os.killpg(up.pid, signal.SIGINT)
        assert wait_exit(up, 30, again_log) == 0
    finally:
        ensure_stopped(up)


def test_a_second_ctrl_c_hands_back_at_once(db_url: str, repo: Store, sql,
                                            tmp_path: Path) -> None:
    log_path = tmp_path / "up.log"
    up = start_up(up_env(db_url, DAGQ_SHUTDOWN_GRACE_S=LONG_GRACE), log_path)
    try:
        run_id = submit_sleeper(repo, 600)
        os.killpg(up.pid, signal.SIGINT)  # Ctrl-C: SIGINT to every process of the group
        wait_for(lambda: REPORT in log_path.read_text(errors="replace"), 20,
                 "the worker to say what it waits for")
        time.sleep(1)
        # One Ctrl-C reached the worker twice (from the terminal, and relayed by dagq
        # up): it still waits for its node.
        assert up.poll() is None
        assert repo.runs.get_run(run_id).nodes[0].status == "running"
        os.killpg(up.pid, signal.SIGINT)  # Ctrl-C again
        hurried_at = time.monotonic()
        assert wait_exit(up, QUICK_STOP_S * 2, log_path) == 0
        assert time.monotonic() - hurried_at < QUICK_STOP_S
        assert_handed_back(repo, sql, run_id)
    finally:
        ensure_stopped(up)


def test_kill_int_to_dagq_worker_twice_hands_back_at_once(repo: Store, sql, fleet) -> None:
    """`kill -INT` reaches the `dagq worker` parent only: it relays both stops."""
    parent = fleet.start_command("worker", "--processes", "1", "--threads", "2",
                                 DAGQ_SHUTDOWN_GRACE_S=LONG_GRACE, DAGQ_LOG_LEVEL="INFO")
    run_id = submit_sleeper(repo, 600)
    os.kill(parent.pid, signal.SIGINT)
    wait_for(lambda: REPORT in fleet.logs(), 20, "the worker to say what it waits for")
    assert repo.runs.get_run(run_id).nodes[0].status == "running"
    os.kill(parent.pid, signal.SIGINT)
    hurried_at = time.monotonic()
    assert parent.wait(QUICK_STOP_S * 2) == 0
    assert time.monotonic() - hurried_at < QUICK_STOP_S
    assert_handed_back(repo, sql, run_id)


def test_a_worker_process_on_its_own_hurries_on_a_second_signal(repo: Store, sql,
                                                                 fleet) -> None:
    worker = fleet.start(threads=2, DAGQ_SHUTDOWN_GRACE_S=LONG_GRACE, DAGQ_LOG_LEVEL="INFO")
    run_id = submit_sleeper(repo, 600)
    worker.send_signal(signal.SIGINT)
    wait_for(lambda: REPORT in fleet.logs(), 20, "the worker to say what it waits for")
    assert repo.runs.get_run(run_id).nodes[0].status == "running"
    worker.send_signal(signal.SIGTERM)
    hurried_at = time.monotonic()
    assert worker.wait(QUICK_STOP_S * 2) == 0
    assert time.monotonic() - hurried_at < QUICK_STOP_S
    assert_handed_back(repo, sql, run_id)
