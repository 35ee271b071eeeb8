"""The bench's API: `python -m dagq.api` on a free port, in one process or several
sharing it (SO_REUSEPORT, as `dagq api --processes N`); auth off (a scratch database)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from dagq.errors import DagqError
from dagq.runtime.procs import child_env, die_with_parent

API_READY_S = 60.0
STOP_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiProcesses:
    """A context manager: the base URL once every process answers /readyz."""

    def __init__(self, url: str, log_dir: Path, *, name: str, processes: int = 1) -> None:
        self.url, self.log_dir, self.name, self.processes = url, log_dir, name, processes
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> str:
        port = free_port()
        env = child_env(self.url, DAGQ_AUTH="off", DAGQ_LOG_LEVEL="WARNING")
        argv = [sys.executable, "-m", "dagq.api", "--host", "127.0.0.1", "--port", str(port)]
        if self.processes > 1:
            argv.append("--reuse-port")
        for i in range(self.processes):
            with open(self.log_dir / f"{self.name}-{i + 1}.log", "wb") as out:
                self.procs.append(subprocess.Popen(
                    argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=die_with_parent))
        base = f"http://127.0.0.1:{port}"
        if self._ready(base):
            return base
        self.__exit__()
        raise DagqError("the bench's API process did not become ready")

    def _ready(self, base: str) -> bool:
        """Each process answers (new connections spread over them; a few tries each)."""
        deadline = time.monotonic() + API_READY_S
        answered = 0
        while time.monotonic() < deadline and all(p.poll() is None for p in self.procs):
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    answered += 1
                    if answered >= 4 * self.processes:
                        return True
                    continue
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        return False

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(STOP_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []
