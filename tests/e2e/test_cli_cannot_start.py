"""A worker that cannot start at start-up stops `dagq up` and `dagq worker` with its one
line (configuration errors are not transient: issue 27, point 7); one broken later (a
hot deploy) keeps the restart back-off; a worker killed while serving (an OOM burst) is
restarted within a second every time (point 8)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.procs import ROOT, WorkerFleet, free_port, wait_for

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-c", "from dagq.cli import main; raise SystemExit(main())"]
BROKEN = "import json\n\nraise RuntimeError('no API key configured')\n"
# Imports fine until the marker file exists (what a later deploy breaks).
FLAKY = ("import os\n\nif os.path.exists(os.environ['FLAKY_MARKER']):\n"
         "    raise RuntimeError('broken deploy')\n")


@pytest.mark.parametrize("command", [
    ["up", "--workers", "2", "--threads", "2", "--port", "PORT"],
    ["worker", "--processes", "2", "--threads", "2"],
])
def test_an_actor_module_that_does_not_import_stops_the_start(
    db_url: str, tmp_path: Path, command: list[str],
) -> None:
    (tmp_path / "broken_actors.py").write_text(BROKEN)
    env = {**os.environ, "DAGQ_DATABASE_URL": db_url, "DAGQ_AUTH": "off",
           "DAGQ_ACTOR_MODULES": "broken_actors", "DAGQ_LOG_LEVEL": "INFO",
           "DAGQ_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    command = [str(free_port()) if part == "PORT" else part for part in command]
    done = subprocess.run([*CLI, *command], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"dagq: error: worker-[12] cannot start: cannot import 'broken_actors' "
        r"\(DAGQ_ACTOR_MODULES\): RuntimeError: no API key configured \(.*broken_actors"
        r"\.py:3\)", last), last
    assert "dagq is up" not in done.stderr
    assert "restarting" not in done.stderr and "trying again" not in done.stderr


def serving_pids(log: Path) -> list[int]:
    """The pid of each worker start that reached serving, in order."""
    return [int(m) for m in re.findall(r"worker [^:\s]+:(\d+):\w+ serving queues",
                                       log.read_text(errors="replace"))]


def test_killed_while_serving_restarts_at_once_but_a_broken_deploy_backs_off(
    fleet: WorkerFleet, tmp_path: Path,
) -> None:
    (tmp_path / "flaky_actors.py").write_text(FLAKY)
    marker = tmp_path / "broken"
    parent = fleet.start_command(
        "worker", "--processes", "1", "--threads", "2", DAGQ_ACTOR_MODULES="flaky_actors",
        FLAKY_MARKER=str(marker), DAGQ_LOG_LEVEL="INFO", PYTHONPATH=f"{tmp_path}:{ROOT}")
    log = next(tmp_path.glob("worker-cmd-*.log"))
    wait_for(lambda: serving_pids(log), 60, "the worker to serve")
    for kill in range(5):  # an OOM burst: SIGKILL it each time it serves again
        pid = serving_pids(log)[-1]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda n=kill: len(serving_pids(log)) == n + 2, 60, "the worker again")
    restarts = re.findall(r"exited with -9; restarting it in (\d+)s", log.read_text())
    assert restarts == ["1"] * 5, log.read_text()[-3000:]

    marker.touch()  # the next deploy breaks the module: back off, and keep the parent
    os.kill(serving_pids(log)[-1], signal.SIGKILL)
    line = ("worker-1 cannot start: cannot import 'flaky_actors' (DAGQ_ACTOR_MODULES): "
            "RuntimeError: broken deploy")
    wait_for(lambda: log.read_text().count(line) >= 2, 60, "two failed restarts")
    waits = re.findall(re.escape(line) + r" \(.*\); nothing runs on it until that is fixed; "
                       r"trying again in (\d+)s", log.read_text())
    assert waits[:2] == ["2", "4"], log.read_text()[-3000:]  # after the crash's 1 s
    assert parent.poll() is None
    marker.unlink()  # fixed: it serves again
    wait_for(lambda: len(serving_pids(log)) == 7, 60, "the worker after the fix")
    assert fleet.stop(parent) == 0
