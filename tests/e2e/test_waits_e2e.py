"""Durable waits with real processes (issue 16): the approval example end to end through
the API (uvicorn), the Python client and the CLI (client mode and against the
database), with real workers and a real sweeper firing a timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from dagq import Client, service
from dagq.store import Store
from tests.harness.e2e import cli, start_api
from tests.harness.procs import ROOT, WorkerFleet, wait_for, wait_for_run

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "examples" / "approval.json"


def node(repo: Store, run_id: uuid.UUID, key: str):
    return next(n for n in repo.runs.get_run(run_id).nodes if n.key == key)


def waiting(repo: Store, run_id: uuid.UUID, key: str = "approve") -> bool:
    return node(repo, run_id, key).status == "waiting"


def test_the_approval_example_through_the_api_client_and_cli(
        fleet: WorkerFleet, repo: Store, tmp_path: Path) -> None:
    url = start_api(fleet)
    fleet.start(threads=2)
    fleet.start_sweeper()
    admin = service.create_api_key(repo, "acme", admin=True)
    with Client(url, admin) as client:
        assert client.register_workflow(EXAMPLE)[0].name == "refund-approval"
        run_id = client.submit("refund-approval").run_id
        wait_for(lambda: waiting(repo, run_id), 30, "approve to wait")
        shown = cli(tmp_path, url, admin, "run", "show", str(run_id))
        assert shown.returncode == 0, shown.stderr
        assert "waiting" in shown.stdout and "waits for signal 'approval'" in shown.stdout
        sent = cli(tmp_path, url, admin, "signal", str(run_id), "approval", "--data",
                   '{"approved": true, "by": "ana"}', "--signal-id", "mail-1")
        assert sent.returncode == 0, sent.stderr
        assert "delivered to node approve" in sent.stderr and sent.stdout.strip() == "mail-1"
        run = client.wait(run_id, timeout_s=30)
        assert run.status == "succeeded"
        nodes = {n.key: n for n in run.nodes}
        assert nodes["approve"].outputs["data"] == {"approved": True, "by": "ana"}
        assert (nodes["send"].status, nodes["discard"].status) == ("succeeded", "skipped")
        again = client.signal(run_id, "approval", {"approved": False}, signal_id="mail-1")
        assert again.duplicate and again.node_key == "approve"  # a retried webhook
        types = [e.type for e in client.events(run_id, follow=False)]
        assert types.count("node_waiting") == 1 and types.count("signal_received") == 1

        # A rejection, sent from Python before the run reaches its wait (buffered).
        second = client.submit("refund-approval").run_id
        early = client.signal(second, "approval", {"approved": False})
        assert early.delivered in (False, True)  # the run may already wait
        assert client.wait(second, timeout_s=30).status == "succeeded"
        assert node(repo, second, "discard").status == "succeeded"
        assert node(repo, second, "send").status == "skipped"


def test_cli_signal_against_the_database_and_a_timeout_from_the_sweeper(
        fleet: WorkerFleet, repo: Store, sql, db_url: str) -> None:
    fleet.start(threads=2)
    fleet.start_sweeper()
    spec = json.loads(EXAMPLE.read_text())
    run_id = service.submit(repo, tenant="acme", workflow=spec).run_id
    wait_for(lambda: waiting(repo, run_id), 30, "approve to wait")
    env = {**os.environ, "DAGQ_DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
    env.pop("DAGQ_URL", None)
    dagq = [sys.executable, "-c", "from dagq.cli import main; raise SystemExit(main())"]
    bad = subprocess.run([*dagq, "signal", str(run_id), "approval", "--data", "[1]"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "JSON object" in bad.stderr
    done = subprocess.run([*dagq, "signal", str(run_id), "approval", "--data",
                           '{"approved": true}'],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "delivered to node approve" in done.stderr
    assert wait_for_run(repo, run_id, 30).status == "succeeded"
    finished = subprocess.run([*dagq, "signal", str(run_id), "approval"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 1 and "already finished" in finished.stderr

    # Nobody answers the next one: its day runs out (backdated), the sweeper fails it.
    late = service.submit(repo, tenant="acme", workflow=spec).run_id
    wait_for(lambda: waiting(repo, late), 30, "approve to wait")
    sql.execute("UPDATE dagq.node_tasks SET wait_until = now() WHERE run_id = %s "
                "AND node_key = 'approve'", (late,))
    run = wait_for_run(repo, late, 30)
    assert run.status == "failed" and run.error["type"] == "WaitTimeout"
    assert run.error["node"] == "approve"
