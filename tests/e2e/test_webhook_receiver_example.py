"""examples/webhook_receiver.py run as a platform runs it (`python
examples/webhook_receiver.py PORT SECRET`), fed by a real sweeper process (DAGQ_HTTP_ALLOW
for loopback, the poll interval at 30 s so its deliverer's wake-up sends): it prints a
verified run end once, answers a redelivery without printing it again, and refuses a
delivery signed with another secret (401, retried by dagq)."""

from __future__ import annotations

import subprocess
import sys

from dagq.config import Settings
from dagq.runtime.procs import die_with_parent
from dagq.service import webhooks as hooks
from tests.harness.drive import drive
from tests.harness.procs import ROOT, free_port, wait_for
from tests.harness.specs import spec

SECRET = "the-receivers-own-secret"


def test_the_example_receiver_verifies_real_deliveries(fleet, repo, sql, tmp_path) -> None:
    port = free_port()
    out = tmp_path / "receiver.out"
    with open(out, "wb") as sink:
        receiver = subprocess.Popen(
            [sys.executable, "examples/webhook_receiver.py", str(port), SECRET], cwd=ROOT,
            stdout=sink, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    try:
        url = f"http://127.0.0.1:{port}/"
        settings = Settings(_env_file=None, http_allow="127.0.0.1")  # type: ignore[call-arg]
        hooks.add_webhook(repo, settings, tenant="acme", url=url, events=["run_succeeded"],
                          secret=SECRET)
        forged = hooks.add_webhook(repo, settings, tenant="acme", url=url,
                                   events=["run_succeeded"], secret="not-the-receivers-one")
        fleet.start_sweeper(DAGQ_HTTP_ALLOW="127.0.0.1", DAGQ_WEBHOOK_POLL_S="30")
        wait_for(lambda: sql.execute(  # its deliverer LISTENs (else: 30 s to its poll)
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
            "AND query = 'LISTEN dagq_webhooks'").fetchone(), 30, "the deliverer's LISTEN")
        run_id = repo.submissions.submit_run(
            tenant="acme", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
        drive(repo)
        wait_for(lambda: f"run_succeeded {run_id}" in out.read_text(), 20, "the print")

        [refused_id] = [d.id for d in repo.webhooks.list_deliveries("acme")
                        if d.webhook_id == forged.record.id]
        refused = wait_for(lambda: repo.webhooks.get_delivery(refused_id, "acme").history
                           and repo.webhooks.get_delivery(refused_id, "acme"), 20,
                           "the forged delivery's attempt recorded")
        [attempt] = refused.history
        assert attempt.status_code == 401 and refused.status == "pending"  # retried later
        [good] = wait_for(lambda: repo.webhooks.list_deliveries("acme", status="succeeded"),
                          20, "the good delivery recorded")
        hooks.redeliver(repo, good.id, "acme")
        wait_for(lambda: repo.webhooks.get_delivery(good.id, "acme").attempts == 2, 20,
                 "the redelivery")
        wait_for(lambda: repo.webhooks.get_delivery(good.id, "acme").status == "succeeded",
                 20, "the redelivery's answer")
    finally:
        receiver.terminate()
        receiver.wait(10)
    assert out.read_text().splitlines() == [f"run_succeeded {run_id}"]  # printed once
