"""`dagq api --processes 2`: two real API processes share one port (SO_REUSEPORT); a
50-way event-key storm over fresh connections (spread over both) makes one run, 50
distinct submissions make 50, and SIGTERM stops both processes cleanly."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.harness.e2e import ready
from tests.harness.procs import WorkerFleet, free_port, wait_for

pytestmark = pytest.mark.e2e

NOOP = {"name": "noop", "nodes": {"a": {"executor": "builtin.noop"}}}


def children(pid: int) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(") ", 1)[1].split()[1]) == pid:
            found.append((int(entry.name), cmdline))
    return found


def test_two_api_processes_share_a_port_and_keep_idempotency(
    db_url: str, sql, tmp_path: Path
) -> None:
    fleet = WorkerFleet(db_url, tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    try:
        parent = fleet.start_command("api", "--processes", "2", "--port", str(port),
                                     DAGQ_AUTH="off")
        wait_for(lambda: ready(base), 60, "the API to answer")
        apis = wait_for(lambda: [c for c in children(parent.pid) if "dagq.api" in c[1]]
                        if len(children(parent.pid)) == 2 else None, 30, "two API processes")
        assert all("--reuse-port" in cmd for _, cmd in apis)
        assert httpx.post(f"{base}/v1/workflows", json=NOOP).status_code == 201

        def post(i: int, key: str | None) -> httpx.Response:
            body = {"workflow": "noop", "inputs": {"i": 0 if key else i}}
            if key:
                body["event_key"] = key
            with httpx.Client(base_url=base, timeout=30) as client:  # a fresh connection
                return client.post("/v1/runs", json=body)

        with ThreadPoolExecutor(50) as pool:
            storm = list(pool.map(lambda i: post(i, "storm"), range(50)))
            distinct = list(pool.map(lambda i: post(i, None), range(50)))
        assert sorted(r.status_code for r in storm) == [200] * 49 + [201]
        assert len({r.json()["run_id"] for r in storm}) == 1
        assert [r.status_code for r in distinct] == [201] * 50
        assert sql.execute("SELECT count(*) AS n FROM dagq.runs").fetchone()["n"] == 51

        os.kill(parent.pid, signal.SIGTERM)
        assert parent.wait(30) == 0
        assert not any(Path(f"/proc/{pid}").exists() and
                       Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1] != "Z"
                       for pid, _ in apis)
    finally:
        fleet.stop_all()
        print(fleet.logs())
