"""Real dagq processes (workers, sweeper) against the per-test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from dagq.runtime.procs import die_with_parent

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
    """Worker (and sweeper) subprocesses with fast timings; all killed at teardown."""

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
            "DAGQ_TEST_EXECUTORS": "on",  # builtin.fail / builtin.crash
        })
        env.update(extra)
        return env

    def start(self, threads: int = 4, queues: str = "", wrap: Sequence[str] = (),
              **env: str) -> subprocess.Popen[bytes]:
        """A worker process; `wrap` runs it through a command (e.g. `ip netns exec NS`)."""
        log = open(self.tmp / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [*wrap, sys.executable, "-m", "dagq.workers", "--threads", str(threads),
             "--queues", queues],
            cwd=ROOT, env=self.env(**env), stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        self.procs.append(proc)
        return proc

    def start_sweeper(self, wrap: Sequence[str] = (), **env: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"worker-sweeper-{len(self.procs)}.log", "wb")  # noqa: SIM115
        defaults = {"DAGQ_SWEEP_INTERVAL_S": "0.5", "DAGQ_WORKER_DEAD_AFTER_S": "2"}
        proc = subprocess.Popen(
            [*wrap, sys.executable, "-m", "dagq.sweeper"], cwd=ROOT,
            env=self.env(**{**defaults, **env}), stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        self.procs.append(proc)
        return proc

    def start_api(self, port: int, host: str = "127.0.0.1", wrap: Sequence[str] = (),
                  **env: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"worker-api-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [*wrap, sys.executable, "-m", "dagq.api", "--host", host, "--port", str(port)],
            cwd=ROOT, env=self.env(**{"DAGQ_AUTH": "off", **env}), stdout=log,
            stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )
        self.procs.append(proc)
        return proc

    def start_command(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """`dagq ARGS` as a subprocess (e.g. `worker --processes 2`)."""
        log = open(self.tmp / f"worker-cmd-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-c", "from dagq.cli import main; raise SystemExit(main())", *args],
            cwd=ROOT, env=self.env(**env), stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
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
        """SIGTERM first (a `dagq worker` parent then stops its children), then SIGKILL."""
        stop_procs(self.procs, 10)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:]
                         for p in sorted(self.tmp.glob("worker-*.log")))


def stop_procs(procs: Sequence[subprocess.Popen[bytes]], wait_s: float) -> None:
    """SIGTERM to each live process, then SIGKILL to any still running `wait_s` later."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for_run(repo, run_id, timeout: float = 60.0):
    def finished():
        run = repo.runs.get_run(run_id)
        return run if run.status not in ("queued", "running") else None

    return wait_for(finished, timeout, f"run {run_id} to finish")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
