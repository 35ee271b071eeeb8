"""The bench's API processes, in one of two configurations (FrontDoor):

- `BENCH_CONFIG`, the bench's own: auth off, WARNING logging, no sweeper;
- `DEPLOYED`, as `dagq up` runs them: the same processes (runtime.procs.api_commands,
  default_api_processes), auth on (the load sends a real key), the servers' default log
  level, and the sweeper beside them.

Either way `python -m dagq.api` on a free port, one process or several sharing it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from dagq.errors import DagqError
from dagq.runtime.procs import api_commands, child_env, die_with_parent

API_READY_S = 60.0
STOP_S = 20.0


@dataclass(frozen=True)
class FrontDoor:
    """How the front door runs. `env` goes over the bench's environment; an empty value
    is the same as unset (dagq.config), i.e. that setting's default."""

    name: str
    env: dict[str, str]
    sweeper: bool
    auth: bool  # the load sends `Authorization: Bearer <key>`
    describe: str


BENCH_CONFIG = FrontDoor(
    "bench", {"DAGQ_AUTH": "off", "DAGQ_LOG_LEVEL": "WARNING"}, sweeper=False, auth=False,
    describe="auth off, WARNING logging, workers at WARNING, no sweeper")
DEPLOYED = FrontDoor(
    "deployed", {"DAGQ_AUTH": "on", "DAGQ_LOG_LEVEL": ""}, sweeper=True, auth=True,
    describe="as `dagq up`: auth on (a real key), default logging (INFO) in the API, "
             "workers and sweeper")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiProcesses:
    """A context manager: the base URL once every process answers /readyz."""

    def __init__(self, url: str, log_dir: Path, *, name: str, processes: int = 1,
                 config: FrontDoor = BENCH_CONFIG) -> None:
        self.url, self.log_dir, self.name, self.processes = url, log_dir, name, processes
        self.config = config
        self.procs: list[subprocess.Popen[bytes]] = []
        self.api_pids: list[int] = []
        self.other_pids: list[int] = []

    def __enter__(self) -> str:
        port = free_port()
        env = child_env(self.url, **self.config.env)
        commands = api_commands("127.0.0.1", port, self.processes)
        if self.config.sweeper:
            commands.append(("sweeper", ["-m", "dagq.sweeper"]))
        for name, argv in commands:
            with open(self.log_dir / f"{self.name}-{name}.log", "wb") as out:
                self.procs.append(subprocess.Popen(
                    [sys.executable, *argv], env=env, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=die_with_parent))
        self.api_pids = [p.pid for p in self.procs[:self.processes]]
        self.other_pids = [p.pid for p in self.procs[self.processes:]]  # the sweeper
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
