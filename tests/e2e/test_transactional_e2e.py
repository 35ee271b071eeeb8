"""dagq.submit_in on real worker processes: a run submitted in the application's
transaction is run by a worker once that transaction commits (woken by its NOTIFY), and
a rolled-back one never exists; an event's runs (POST /v1/events' service) run too."""

from __future__ import annotations

import time

import psycopg
import pytest

import dagq
from dagq.service.triggers import emit
from dagq.service.workflows import register_workflow
from tests.harness.procs import wait_for_run

pytestmark = pytest.mark.e2e

FLOW = {"name": "welcome", "triggers": [{"event": "user.signup"}],
        "nodes": {"greet": {"executor": "builtin.echo", "params": {"hello": True}},
                  "done": {"executor": "builtin.noop", "depends_on": ["greet"]}}}


def test_a_committed_submit_in_runs_on_a_worker(repo, fleet, sql, db_url) -> None:
    fleet.start(threads=2)
    register_workflow(repo, FLOW)
    with psycopg.connect(db_url) as app:
        kept = dagq.submit_in(app, "welcome", inputs={"user": "ada"})
        app.commit()
        dropped = dagq.submit_in(app, "welcome", inputs={"user": "bob"})
        app.rollback()
    started = time.monotonic()
    run = wait_for_run(repo, kept.run_id, timeout=60)
    assert run.status == "succeeded"
    greet = next(n for n in run.nodes if n.key == "greet")
    assert greet.outputs["run"] == {"user": "ada"}
    print(f"\nsubmit_in commit -> run succeeded (workers starting): "
          f"{time.monotonic() - started:.2f}s")
    with psycopg.connect(db_url) as app:  # warm workers: woken by the commit's NOTIFY
        again = dagq.submit_in(app, "welcome", inputs={"user": "eve"})
        app.commit()
    started = time.monotonic()
    assert wait_for_run(repo, again.run_id).status == "succeeded"
    print(f"submit_in commit -> run succeeded (warm): {time.monotonic() - started:.2f}s")
    assert sql.execute("SELECT count(*) AS n FROM dagq.runs WHERE id = %s",
                       (dropped.run_id,)).fetchone()["n"] == 0
    event = emit(repo, tenant="t", name="user.signup", payload={"user": "cy"})
    assert wait_for_run(repo, event.runs[0].run_id).status == "succeeded"
