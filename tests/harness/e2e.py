"""Helpers for the tests that run dagq as real processes (tests/e2e, tests/chaos): an API
process that is ready, the CLI in client mode, a worker that serves an executor, and the
members of a process group (with their threads' stacks when one hangs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.harness.procs import ROOT, WorkerFleet, free_port, wait_for

# A database URL nothing answers: the CLI's client mode must never open it.
NOWHERE = "postgresql://dagq:dagq@127.0.0.1:1/nowhere?connect_timeout=1"


def ready(base: str) -> bool:
    """The API at `base` answers /readyz with 200."""
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def start_api(fleet: WorkerFleet) -> str:
    """`python -m dagq.api` with DAGQ_AUTH=on in `fleet`, on a free port; its URL once ready."""
    port = free_port()
    fleet.start_api(port, DAGQ_AUTH="on")
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: ready(url), 60, "the API to be ready")
    return url


def cli(tmp_path: Path, url: str, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`dagq ARGS` in client mode, from a directory without a .env file."""
    env = {**os.environ, "DAGQ_URL": url, "DAGQ_API_KEY": key, "DAGQ_DATABASE_URL": NOWHERE,
           "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-c", "from dagq.cli import main; raise SystemExit(main())", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def registered(sql, executor: str) -> None:
    wait_for(lambda: sql.execute("SELECT 1 FROM dagq.executors WHERE name = %s",
                                 (executor,)).fetchone(), 60, f"a worker serving {executor}")


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def dump_stacks(pgid: int) -> list[str]:
    """Ask every live member of the group for its threads' stacks (SIGUSR2, see
    dagq.runtime.logs); they land in the log. Returns the members' command lines."""
    alive = []
    for pid in group_members(pgid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            os.kill(pid, signal.SIGUSR2)
        except OSError:
            continue
        alive.append(f"{pid}: {cmdline.decode(errors='replace')[:120]}")
    time.sleep(1.0)
    return alive

