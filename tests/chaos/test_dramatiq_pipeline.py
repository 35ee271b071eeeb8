"""A SIGKILL during a Dramatiq pipeline (issue 19): the pipeline completes, and each
step runs to success once (a step's next message carries a fixed message id, which is
the run's event key: enqueued twice, it is one run)."""

from __future__ import annotations

import importlib
import sys

import dramatiq
import pytest

from dagq.workers.broker import PostgresBroker
from tests.harness.procs import wait_for

pytestmark = pytest.mark.chaos

APP = "tests.e2e.dramatiq_app"
FAST = {"DAGQ_LEASE_TTL_S": "2", "DAGQ_HEARTBEAT_S": "0.5", "DAGQ_ACTOR_MODULES": APP}


def test_sigkill_during_a_pipeline_completes_it_each_step_once(repo, fleet, sql, db_url,
                                                               tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DAGQ_DATABASE_URL", db_url)
    previous = dramatiq.broker.global_broker
    dramatiq.set_broker(PostgresBroker(repo, worker_id="producer", lease_ttl_s=30,
                                       max_output_bytes=100_000))
    sys.modules.pop(APP, None)
    app = importlib.import_module(APP)
    try:
        fleet.start_sweeper()
        fleet.start(threads=2, **FAST)
        fleet.start(threads=2, **FAST)
        marker = tmp_path / "killed"
        pipe = dramatiq.pipeline([app.add.message(1, 2), app.crash_once.message(str(marker)),
                                  app.add.message(10)]).run()
        assert pipe.get_result(block=True, timeout=60_000) == 14, fleet.logs()
        assert marker.exists()  # a worker did die in the middle
        # The result is stored before the step's completion commits: wait for that too.
        wait_for(lambda: sql.execute("SELECT count(*) AS n FROM dagq.runs WHERE status "
                                     "IN ('queued', 'running')").fetchone()["n"] == 0,
                 30, "the pipeline's runs to finish")
        steps = sql.execute(
            "SELECT r.workflow, t.status, t.attempts, "
            "  (SELECT count(*) FROM dagq.run_events e WHERE e.run_id = r.id "
            "   AND e.type = 'node_succeeded') AS successes "
            "FROM dagq.runs r JOIN dagq.node_tasks t ON t.run_id = r.id "
            "ORDER BY r.created_at").fetchall()
        assert [(s["workflow"], s["status"], s["successes"]) for s in steps] == [
            ("add", "succeeded", 1), ("crash_once", "succeeded", 1), ("add", "succeeded", 1)]
        assert steps[1]["attempts"] == 2  # the killed attempt counts
    finally:
        sys.modules.pop(APP, None)
        app.backend.store.close()
        dramatiq.broker.global_broker = previous
