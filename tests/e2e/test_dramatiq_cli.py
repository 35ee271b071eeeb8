"""A module that sets `dramatiq.set_broker(PostgresBroker(url=...))` itself runs under
`dagq worker` and under the `dramatiq` CLI, with LISTEN and heartbeats in both
(issue 19)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from collections.abc import Iterator
from types import ModuleType

import dramatiq
import pytest

from tests.harness.procs import ROOT, die_with_parent, wait_for

pytestmark = pytest.mark.e2e

APP = "tests.e2e.dramatiq_own_broker"


@pytest.fixture
def app(db_url, monkeypatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("DAGQ_DATABASE_URL", db_url)
    previous = dramatiq.broker.global_broker
    sys.modules.pop(APP, None)
    module = importlib.import_module(APP)  # sets its own PostgresBroker
    yield module
    sys.modules.pop(APP, None)
    module.broker.close()
    module.backend.store.close()
    dramatiq.broker.global_broker = previous


def test_dagq_worker_serves_a_module_that_set_its_own_broker(app, fleet) -> None:
    fleet.start(DAGQ_ACTOR_MODULES=APP)
    assert app.multiply.send(6, 7).get_result(block=True, timeout=30_000) == 42


def test_the_dramatiq_cli_runs_it_with_heartbeats_and_no_busy_polling(app, fleet, sql,
                                                                      tmp_path) -> None:
    log = open(tmp_path / "dramatiq.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", APP, "--processes", "1", "--threads", "2"],
        cwd=ROOT, env=fleet.env(DAGQ_LEASE_TTL_S="2", DAGQ_HEARTBEAT_S="0.5"),
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    fleet.procs.append(proc)
    try:
        assert app.multiply.send(6, 7).get_result(block=True, timeout=30_000) == 42
        # 4 s against a 2 s lease: heartbeats keep it (no lease_expired, one attempt).
        slow = app.slow_multiply.send(2, 3, 4)
        assert slow.get_result(block=True, timeout=30_000) == 6
        expired = sql.execute("SELECT count(*) AS n FROM dagq.run_events "
                              "WHERE type = 'node_lease_expired'").fetchone()["n"]
        assert expired == 0
        # Idle, the worker's consumer waits on LISTEN: a handful of transactions a
        # second (heartbeats, a poll a second), not thousands.
        before = xact_commit(sql)
        time.sleep(2)
        assert xact_commit(sql) - before < 60
    finally:
        proc.terminate()
        wait_for(lambda: proc.poll() is not None, 30, "the dramatiq CLI to stop")
    assert proc.returncode == 0, (tmp_path / "dramatiq.log").read_text()[-3000:]


def xact_commit(sql) -> int:
    return sql.execute("SELECT xact_commit FROM pg_stat_database "
                       "WHERE datname = current_database()").fetchone()["xact_commit"]
