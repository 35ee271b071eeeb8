"""`dagq up` on its own embedded Postgres, driven like a user would: the CLI with --wait,
its exit codes, and Ctrl-C stopping everything (issue 2, 3 and 6)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.harness.procs import ROOT, free_port, wait_for

pytestmark = pytest.mark.e2e


def dagq(*args: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from dagq.cli import main; raise SystemExit(main())", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


def test_up_runs_everything_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    data = Path("/tmp") / f"dagq-up-{os.getpid()}"  # short: the socket lives inside
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DAGQ_DATABASE_URL"}
    env.update({"DAGQ_DATA_DIR": str(data), "DAGQ_AUTH": "off", "DAGQ_LOG_LEVEL": "WARNING",
                "PYTHONPATH": str(ROOT), "DAGQ_TEST_EXECUTORS": "on"})
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115
    up = subprocess.Popen(
        [sys.executable, "-c", "from dagq.cli import main; raise SystemExit(main())", "up",
         "--workers", "1", "--threads", "4", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 60, "the API to answer")
        # The banner comes once the workers serve (a worker that cannot start: no banner).
        wait_for(lambda: "dagq is up" in (tmp_path / "up.log").read_text(), 60, "the banner")
        banner = (tmp_path / "up.log").read_text()
        assert "psql" in banner and "Ctrl-C" in banner and "DAGQ_AUTH=off" in banner

        ok = dagq("submit", "examples/support-answer.json", "--inputs", '{"q": 1}', "--wait",
                  env=env)
        assert ok.returncode == 0, ok.stderr
        run_id = ok.stdout.strip().splitlines()[-1]
        assert "succeeded" in ok.stderr

        failing = tmp_path / "failing.yaml"
        failing.write_text("name: failing\nnodes:\n  a:\n    executor: builtin.fail\n"
                           "    max_attempts: 1\n")
        bad = dagq("submit", str(failing), "--wait", env=env)
        assert bad.returncode == 1 and "failed" in bad.stderr

        broken = tmp_path / "broken.json"
        broken.write_text(json.dumps({"name": "x", "nodes": {"a": {"executor": "builtin.noop",
                                                                   "depends_on": ["a"]}}}))
        invalid = dagq("submit", str(broken), env=env)
        assert invalid.returncode == 2
        assert invalid.stderr.strip() == \
            "dagq: error: invalid workflow: nodes: node 'a' depends on itself"
        assert "Traceback" not in invalid.stderr

        shown = dagq("run", "show", run_id, env=env)
        assert shown.returncode == 0 and "aggregate" in shown.stdout
        listed = dagq("runs", env=env)
        assert listed.returncode == 0 and "support" in listed.stdout
        key = dagq("keys", "create", "--tenant", "acme", env=env)
        assert key.returncode == 0 and key.stdout.strip().splitlines()[-1].startswith("dagq_")
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(60)
        log.close()
    assert code == 0, (tmp_path / "up.log").read_text()[-3000:]
    # Everything stopped, the embedded server included.
    assert not (data / "pg" / "postmaster.pid").exists()
    assert "embedded Postgres stopped" in (tmp_path / "up.log").read_text()
    shutil.rmtree(data, ignore_errors=True)
