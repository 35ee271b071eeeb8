"""Concurrency keys across two real API processes (`dagq api --processes 2`): 50
concurrent submits with the same key (fresh connections, spread over both processes)
never let more than `limit` runs hold a slot, and the waiting ones start one by one in
the order they were written; 50 concurrent `cancel_new` submits leave exactly `limit`
open; 50 concurrent `cancel_running` submits leave exactly one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from dagq.store import Store
from tests.harness.drive import complete
from tests.harness.e2e import ready
from tests.harness.procs import WorkerFleet, free_port, wait_for

pytestmark = pytest.mark.e2e

CHAT = {"name": "chat", "concurrency": {"key": "inputs.conversation_id", "limit": 1},
        "nodes": {"reply": {"executor": "builtin.noop"}}}


def storm(client: httpx.Client, conversation: str,
          concurrency: dict[str, Any] | None = None) -> list[httpx.Response]:
    """50 submits at once, over 50 connections (spread over both API processes)."""
    def post(i: int) -> httpx.Response:
        body: dict[str, Any] = {"workflow": "chat",
                                "inputs": {"conversation_id": conversation, "i": i}}
        if concurrency:
            body["concurrency"] = {"key": "inputs.conversation_id", **concurrency}
        return client.post("/v1/runs", json=body)

    with ThreadPoolExecutor(50) as pool:
        return list(pool.map(post, range(50)))


def drain_one_at_a_time(repo: Store, sql, count: int) -> list[str]:
    """Lease everything leasable each round (exactly one run's node may be), finish it."""
    started = []
    for _ in range(count):
        leased = repo.leases.lease(worker="w", queue="default", limit=100, ttl_s=30)
        assert len(leased) == 1, f"{len(leased)} runs of one key held a slot at once"
        open_slots = sql.execute(
            "SELECT count(*) AS n FROM dagq.runs WHERE concurrency_key = %s AND status IN "
            "('queued', 'running') AND NOT concurrency_waiting",
            ["inputs.conversation_id=c-queue"]).fetchone()["n"]
        assert open_slots == 1
        started.append(str(leased[0].run_id))
        assert complete(repo, leased[0].id, leased[0].version, {})
    assert repo.leases.lease(worker="w", queue="default", limit=100, ttl_s=30) == []
    return started


def test_fifty_concurrent_submits_of_one_key_across_two_api_processes(
    db_url: str, sql, repo: Store, tmp_path: Path
) -> None:
    fleet = WorkerFleet(db_url, tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    try:
        fleet.start_command("api", "--processes", "2", "--port", str(port), DAGQ_AUTH="off")
        wait_for(lambda: ready(base), 60, "the API to answer")
        client = httpx.Client(base_url=base, timeout=30,
                              limits=httpx.Limits(max_connections=50))
        assert client.post("/v1/workflows", json=CHAT).status_code == 201

        queued = storm(client, "c-queue")
        assert [r.status_code for r in queued] == [201] * 50
        assert {r.json()["status"] for r in queued} == {"queued"}
        written = [str(row["id"]) for row in sql.execute(
            "SELECT id FROM dagq.runs WHERE concurrency_key = 'inputs.conversation_id=c-queue'"
            " ORDER BY concurrency_seq")]
        assert drain_one_at_a_time(repo, sql, 50) == written
        assert sql.execute("SELECT count(*) AS n FROM dagq.runs WHERE status = 'succeeded'"
                           ).fetchone()["n"] == 50

        refused = storm(client, "c-new", {"limit": 2, "on_limit": "cancel_new"})
        statuses = sorted(r.json()["status"] for r in refused)
        assert statuses == ["cancelled"] * 48 + ["queued"] * 2

        replaced = storm(client, "c-running", {"on_limit": "cancel_running"})
        assert [r.status_code for r in replaced] == [201] * 50
        rows = sql.execute("SELECT status, count(*) AS n FROM dagq.runs WHERE concurrency_key "
                           "= 'inputs.conversation_id=c-running' GROUP BY status").fetchall()
        assert {row["status"]: row["n"] for row in rows} == {"cancelled": 49, "queued": 1}
        (survivor,) = [r.json()["run_id"] for r in replaced
                       if client.get(f"/v1/runs/{r.json()['run_id']}").json()["status"]
                       == "queued"]
        view = client.get(f"/v1/runs/{survivor}").json()
        assert view["concurrency_key"] == "inputs.conversation_id=c-running"
        assert view["concurrency_waiting"] is False
        client.close()
    finally:
        fleet.stop_all()
        print(fleet.logs())
