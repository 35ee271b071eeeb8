"""One `dagq up` per data directory, and a taken port is one line and exit 1 for `dagq
up` and `dagq api` alike, before anything starts (issue 27, point 5)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.harness.procs import ROOT, free_port, wait_for

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-c", "from dagq.cli import main; raise SystemExit(main())"]


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_second_up_on_the_same_data_directory_or_port_exits_with_one_line(
    db_url: str, tmp_path: Path,
) -> None:
    env = {**os.environ, "DAGQ_DATABASE_URL": db_url, "DAGQ_DATA_DIR": str(tmp_path / "data"),
           "DAGQ_AUTH": "off", "DAGQ_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    port = free_port()
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        first = subprocess.Popen([*CLI, "up", "--workers", "0", "--port", str(port)],
                                 cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), 60, "the first up")

        def second(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*CLI, *args], cwd=ROOT, env={**env, **extra},
                                  capture_output=True, text=True, timeout=60)

        same_dir = second("up", "--workers", "1", "--port", str(free_port()))
        assert same_dir.returncode == 1
        assert same_dir.stderr.strip().splitlines() == [
            f"dagq: error: another `dagq up` (pid {first.pid}) is running on the data "
            f"directory {(tmp_path / 'data').resolve()}; stop it first, or give this one "
            "its own DAGQ_DATA_DIR"]

        taken = (f"dagq: error: port {port} on 127.0.0.1 is already in use (another "
                 "`dagq up` or `dagq api`?); choose another with --port or DAGQ_API_PORT")
        same_port = second("up", "--workers", "1", "--port", str(port),
                           DAGQ_DATA_DIR=str(tmp_path / "other"))
        assert (same_port.returncode, same_port.stderr.strip().splitlines()) == (1, [taken])
        for api in (["api", "--port", str(port)],
                    ["api", "--port", str(port), "--processes", "2"]):
            done = second(*api)
            assert (done.returncode, done.stderr.strip().splitlines()) == (1, [taken]), api
        assert first.poll() is None  # the first one is untouched
    finally:
        first.send_signal(signal.SIGINT)
        code = first.wait(60)
    assert code == 0, log_path.read_text()[-3000:]
    # Its lock went with it: the next `dagq up` here starts.
    with open(tmp_path / "again.log", "wb") as log:
        again = subprocess.Popen([*CLI, "up", "--workers", "0", "--port", str(port)],
                                 cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), 60, "the next up")
    finally:
        again.send_signal(signal.SIGINT)
        assert again.wait(60) == 0
