"""Real worker processes against the per-test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> object:
    """Poll a condition that real processes make true (never a stand-in for a timer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class WorkerFleet:
    def __init__(self, db_url: str, tmp: Path) -> None:
        self.db_url = db_url
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "DAGQ_DATABASE_URL": self.db_url, "DAGQ_HEARTBEAT_S": "0.5",
            "DAGQ_LEASE_TTL_S": "5", "DAGQ_ACTOR_MODULES": "tests.e2e.sample_executors",
            "DAGQ_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT),
        })
        env.update(extra)
        return env

    def start(self, threads: int = 4, queues: str = "", **env: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers", "--threads", str(threads), "--queues", queues],
            cwd=ROOT, env=self.env(**env), stdout=log, stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:]
                         for p in sorted(self.tmp.glob("worker-*.log")))


@pytest.fixture
def fleet(db_url: str, tmp_path: Path) -> Iterator[WorkerFleet]:
    fleet = WorkerFleet(db_url, tmp_path)
    yield fleet
    fleet.stop_all()


def wait_for_run(repo, run_id, timeout: float = 60.0):
    def finished():
        run = repo.get_run(run_id)
        return run if run.status not in ("queued", "running") else None

    return wait_for(finished, timeout, f"run {run_id} to finish")
