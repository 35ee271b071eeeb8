"""`async def` executors and actors on real worker processes (issue 19 item 6): they
run on the worker's event loop, time out, are cancelled with their run (the task sees
CancelledError), stream through `current_node()`, and a plain `async def` Dramatiq
actor runs under `dagq worker`. One worker serves every case at once."""

from __future__ import annotations

import importlib
import sys
import time

import dramatiq
import pytest

from dagq.workers.broker import PostgresBroker
from tests.harness.procs import wait_for, wait_for_run
from tests.harness.specs import spec

pytestmark = pytest.mark.e2e

APP = "tests.e2e.async_executors"


def test_async_executors_and_actors_on_a_real_worker(repo, sql, fleet) -> None:
    fleet.start(threads=4, DAGQ_ACTOR_MODULES=APP)
    wait_for(lambda: sql.execute("SELECT 1 FROM dagq.executors WHERE name = "
                                 "'test.async_stream'").fetchone(), 60, "the worker")
    ok = repo.submissions.submit_run(tenant="t", spec=spec({
        "a": {"executor": "test.async_ok", "params": {"x": 21}}})).run_id
    stream = repo.submissions.submit_run(tenant="t", spec=spec({
        "s": {"executor": "test.async_stream"}})).run_id
    slow = repo.submissions.submit_run(tenant="t", spec=spec({"z": {
        "executor": "test.async_sleep", "params": {"seconds": 30}, "timeout_s": 1,
        "max_attempts": 2, "backoff": {"initial_s": 0.1}}})).run_id
    cancel = repo.submissions.submit_run(tenant="t", spec=spec({"c": {
        "executor": "test.async_sleep", "params": {"seconds": 30}}})).run_id
    stubborn = repo.submissions.submit_run(tenant="t", spec=spec({"i": {
        "executor": "test.async_stubborn", "params": {"ignore_s": 6}, "timeout_s": 1,
        "max_attempts": 1}})).run_id
    started = time.monotonic()

    previous = dramatiq.broker.global_broker
    dramatiq.set_broker(PostgresBroker(repo, worker_id="producer"))
    try:
        sys.modules.pop(APP, None)
        message = importlib.import_module(APP).double.send(4)
    finally:
        sys.modules.pop(APP, None)
        dramatiq.broker.global_broker = previous

    run = wait_for_run(repo, ok)
    assert run.status == "succeeded" and run.nodes[0].outputs == {"doubled": 42}
    run = wait_for_run(repo, stream)
    assert run.status == "succeeded"
    got = repo.streams.node_stream(stream, "s", None, None)
    assert got["text"] == "a0 a1 a2 a3 a4 " and got["data"] == [{"done": 5}]

    wait_for(lambda: repo.runs.get_run(cancel).nodes[0].status == "running", 15, "the lease")
    repo.runs.cancel_run(cancel, "t")
    wait_for(lambda: repo.runs.get_run(cancel).nodes[0].status == "cancelled", 10,
             "the async node to stop at its next heartbeat")
    wait_for(lambda: repo.streams.node_stream(cancel, "c", None, None)["text"] == "cancelled", 10,
             "the task to see CancelledError")

    run = wait_for_run(repo, slow, timeout=20)  # two attempts of ~1 s, not 30 s each
    assert run.status == "failed" and run.nodes[0].attempts == 2
    assert run.nodes[0].error["type"] == "Timeout"
    assert time.monotonic() - started < 15
    assert repo.streams.node_stream(slow, "z", 2, None)["text"] == "cancelled"

    # It ignores its cancellation for 6 s: the attempt still ends as a timeout (not
    # Dramatiq's RuntimeError) about 1 s after the cancel, the task left to finish.
    run = wait_for_run(repo, stubborn, timeout=20)
    assert run.status == "failed" and run.nodes[0].error["type"] == "Timeout", run.nodes[0]
    assert (run.nodes[0].finished_at - run.nodes[0].started_at).total_seconds() < 4.5

    row = wait_for(lambda: sql.execute(
        "SELECT r.id FROM dagq.runs r WHERE r.event_key = %s AND r.status = 'succeeded'",
        (message.message_id,)).fetchone(), 30, "the async actor's run")
    assert repo.runs.get_run(row["id"]).nodes[0].outputs == {"result": 8}
    # The worker lists its plain actors beside its executors (what dead-lettering reads).
    listed = sql.execute("SELECT executors FROM dagq.workers WHERE status = 'alive'"
                         ).fetchone()["executors"]
    assert {"double", "test.async_ok"} <= set(listed)
