"""dagq.Client against the real API (uvicorn on a real socket, real Postgres): every
operation, pagination, events() across cut connections, wait() and its timeout."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dagq import Client
from dagq.client import RetryPolicy
from dagq.client import _calls as calls
from dagq.errors import Conflict, InvalidRequest, InvalidWorkflow, NotFound
from dagq.models import RunEvent
from tests.harness.drive import drive
from tests.harness.live_api import CHAIN, CountingTransport, CutProxy, LiveApi, step
from tests.harness.procs import wait_for

FAST = RetryPolicy(initial_s=0.01, max_s=0.05)


@pytest.fixture
def client(api: LiveApi) -> Iterator[Client]:
    with Client(api.url, api.admin, retry_policy=FAST) as dagq:
        yield dagq


def subscribers(api: LiveApi) -> int:
    return api.app.state.hub.subscriber_count()


def drive_when_watched(api: LiveApi) -> threading.Thread:
    """A worker stand-in that starts once a stream follows the run, then runs its nodes."""

    def work() -> None:
        wait_for(lambda: subscribers(api) >= 1, 30, "a stream to follow the run")
        while step(api.repo):
            pass

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_workflows_register_list_read(client: Client, tmp_path: Path) -> None:
    ref, created = client.register_workflow(CHAIN)
    assert (ref.name, ref.version, created) == ("chain", 1, True)
    assert client.register_workflow(CHAIN) == (ref, False)  # identical spec: same version
    changed = {**CHAIN, "fail_fast": False}
    path = tmp_path / "chain.yaml"
    path.write_text("name: chain\nfail_fast: false\nnodes:\n  a: {executor: builtin.echo}\n")
    assert client.register_workflow(path)[0].version == 2
    assert client.register_workflow(changed)[0].version == 3
    assert [(w.name, w.version) for w in client.workflows()] == [("chain", 3)]
    assert client.workflow("chain").version == 3
    first = client.workflow("chain", version=1)
    assert first.version == 1 and set(first.spec["nodes"]) == {"a", "b", "c", "d"}
    with pytest.raises(NotFound) as missing:
        client.workflow("chain", version=9)
    assert missing.value.status == 404 and missing.value.code == "not_found"
    with pytest.raises(InvalidWorkflow) as bad:
        client.register_workflow(tmp_path / "absent.json")
    assert "cannot read" in bad.value.message


def test_submit_by_name_and_inline_and_by_event_key(client: Client, sql) -> None:
    client.register_workflow(CHAIN)
    by_name = client.submit("chain", {"n": 1}, priority=5, deadline_s=600)
    assert by_name.created and by_name.status == "queued"
    run = client.run(by_name.run_id)
    assert (run.workflow, run.workflow_version, run.inputs, run.priority) == \
        ("chain", 1, {"n": 1}, 5)
    assert sorted(n.key for n in run.nodes) == ["a", "b", "c", "d"]
    assert client.run(str(by_name.run_id)).run_id == by_name.run_id
    inline = client.submit({"name": "inline", "nodes": {"x": {"executor": "builtin.noop"}}})
    assert client.run(inline.run_id).workflow == "inline"
    keyed = client.submit("chain", {"n": 2}, event_key="order-42")
    again = client.submit("chain", {"n": 2}, event_key="order-42")
    assert keyed.created and not again.created and again.run_id == keyed.run_id
    with pytest.raises(Conflict) as conflict:
        client.submit("chain", {"n": 3}, event_key="order-42")
    assert conflict.value.status == 409 and conflict.value.code == "conflict"
    assert conflict.value.details["run_id"] == str(keyed.run_id)
    assert sql.execute("SELECT count(*) AS n FROM dagq.runs").fetchone()["n"] == 3


def test_invalid_submissions_raise_with_the_api_details(client: Client) -> None:
    with pytest.raises(InvalidRequest) as bad:
        client.submit("chain", priority=5000)
    assert bad.value.status == 422 and bad.value.code == "invalid_request"
    assert any("priority" in str(item["loc"]) for item in bad.value.details)
    with pytest.raises(InvalidWorkflow) as cycle:  # an InvalidRequest too
        client.submit({"name": "loop", "nodes": {
            "a": {"executor": "builtin.noop", "depends_on": ["b"]},
            "b": {"executor": "builtin.noop", "depends_on": ["a"]}}})
    assert isinstance(cycle.value, InvalidRequest) and cycle.value.code == "invalid_workflow"
    assert "cycle" in cycle.value.message
    with pytest.raises(NotFound):
        client.submit("never-registered")


def test_runs_iterates_every_page_newest_first(api: LiveApi, sql) -> None:
    transport = CountingTransport()
    with Client(api.url, api.admin, transport=transport) as client:
        client.register_workflow(CHAIN)
        ids = [client.submit("chain", {"i": i}).run_id for i in range(7)]
        for run_id in ids[:2]:
            client.cancel(run_id)
        transport.requests.clear()
        listed = [r.run_id for r in client.runs(page_size=3)]
        assert len([r for r in transport.requests if r.url.path == "/v1/runs"]) == 3
        newest_first = [r["id"] for r in sql.execute(
            "SELECT id FROM dagq.runs ORDER BY created_at DESC, id DESC").fetchall()]
        assert listed == newest_first and set(listed) == set(ids)
        assert {r.run_id for r in client.runs(status="cancelled", page_size=1)} == \
            set(ids[:2])
        assert [r.run_id for r in client.runs(workflow="chain", page_size=500)] == listed
        assert list(client.runs(workflow="other")) == []
        with pytest.raises(InvalidRequest):
            next(client.runs(status="sleeping"))


def test_cancel_and_retry(client: Client, api: LiveApi) -> None:
    run_id = client.submit(CHAIN).run_id
    with pytest.raises(Conflict):
        client.retry(run_id)  # still queued
    cancelled = client.cancel(run_id)
    assert cancelled.run_id == run_id and cancelled.status == "cancelled"
    assert client.cancel(run_id).status == "cancelled"  # again: still 202
    retried = client.retry(run_id)
    assert retried.status in ("queued", "running")
    drive(api.repo)
    assert client.run(run_id).status == "succeeded"
    with pytest.raises(Conflict):
        client.cancel(run_id)
    with pytest.raises(NotFound):
        client.cancel(uuid.uuid4())


def test_schedules_and_queues(client: Client) -> None:
    client.register_workflow(CHAIN)
    schedule_id = client.create_schedule("chain", "0 3 * * *", {"nightly": True},
                                         timezone="Europe/Paris")
    record = client.schedule(schedule_id)
    assert (record.cron, record.timezone, record.inputs) == \
        ("0 3 * * *", "Europe/Paris", {"nightly": True})
    assert [s.schedule_id for s in client.schedules()] == [schedule_id]
    assert client.delete_schedule(schedule_id) is None
    with pytest.raises(NotFound):
        client.schedule(schedule_id)
    assert client.schedules() == []
    with pytest.raises(InvalidRequest):
        client.create_schedule("chain", "every day at 3")
    client.submit("chain")
    [default] = [q for q in client.queues() if q.name == "default"]
    assert default.queued == 1 and default.running == 0


def test_events_follow_a_run_across_cut_connections(api: LiveApi) -> None:
    proxy = CutProxy(api.port)
    seen: list[RunEvent] = []
    try:
        with Client(proxy.url, api.acme, retry_policy=FAST) as client:
            run_id = client.submit(CHAIN).run_id
            for event in client.events(run_id):
                seen.append(event)
                if event.type == "node_queued":
                    if event.node_key in ("a", "c"):
                        proxy.cut()  # the server keeps running; this stream is dead
                    step(api.repo)  # progress while (perhaps) disconnected
            stored = list(client.events(run_id, follow=False))
    finally:
        proxy.close()
    assert [e.id for e in seen] == [e.id for e in stored]  # none lost, none twice
    assert seen == stored and seen[-1].type == "run_succeeded"
    assert proxy.cuts == 2
    resumed_from = proxy.last_event_ids()
    assert len(resumed_from) >= 2 and set(resumed_from) <= {str(e.id) for e in seen}


def test_events_after_an_id_and_past_the_end(client: Client, api: LiveApi) -> None:
    run_id = client.submit(CHAIN).run_id
    drive(api.repo)
    stored = list(client.events(run_id, follow=False))
    assert [e.id for e in client.events(run_id, after=stored[4].id)] == \
        [e.id for e in stored[5:]]
    assert list(client.events(run_id, after=stored[-1].id)) == []  # ends, no reconnects
    assert list(client.events(run_id, after=stored[-1].id, follow=False)) == []
    with pytest.raises(NotFound):
        next(client.events(uuid.uuid4()))


def test_event_pages(api: LiveApi, monkeypatch) -> None:
    transport = CountingTransport()
    with Client(api.url, api.acme, transport=transport) as client:
        run_id = client.submit(CHAIN).run_id
        drive(api.repo)
        everything = list(client.events(run_id))
        monkeypatch.setattr(calls, "EVENTS_PAGE", 4)
        transport.requests.clear()
        assert list(client.events(run_id, follow=False)) == everything
    assert len(everything) == 15
    assert [r.url.params["after"] for r in transport.requests] == \
        ["0", *(str(everything[i].id) for i in (3, 7, 11))]


def test_events_keep_following_a_run_retried_after_it_failed(client: Client,
                                                            api: LiveApi) -> None:
    run_id = client.submit({"name": "flaky", "defaults": {"max_attempts": 1},
                            "nodes": {"a": {"executor": "builtin.echo"}}}).run_id
    drive(api.repo, {"a": lambda payload: 1 / 0})
    assert client.run(run_id).status == "failed"
    client.retry(run_id)
    types = []
    for event in client.events(run_id):
        types.append(event.type)
        if event.type == "node_queued" and "run_failed" in types:
            step(api.repo)
    assert types.count("run_failed") == 1 and types[-1] == "run_succeeded"


def test_wait_follows_the_stream_and_returns_the_finished_run(api: LiveApi) -> None:
    transport = CountingTransport()
    with Client(api.url, api.acme, transport=transport) as client:
        run_id = client.submit(CHAIN).run_id
        worker = drive_when_watched(api)
        run = client.wait(run_id, timeout_s=120)
        worker.join(30)
    assert run.status == "succeeded" and run.nodes_remaining == 0
    assert all(n.status == "succeeded" for n in run.nodes)
    paths = [r.url.path for r in transport.requests]
    assert paths.count(f"/v1/runs/{run_id}/events") == 1  # no polling
    with Client(api.url, api.acme) as again:
        assert again.wait(run_id, timeout_s=0.001).status == "succeeded"  # already done


def test_wait_times_out(client: Client) -> None:
    run_id = client.submit(CHAIN).run_id  # no worker: it never finishes
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=f"run {run_id} did not finish within 1.5s"):
        client.wait(run_id, timeout_s=1.5)
    assert 1.5 <= time.monotonic() - started < 30


def test_wait_reopens_its_stream_rather_than_overshoot_its_deadline(api: LiveApi) -> None:
    transport = CountingTransport()
    with Client(api.url, api.acme, transport=transport) as client:
        run_id = client.submit(CHAIN).run_id

        def one_node_a_second_later() -> None:
            wait_for(lambda: subscribers(api) >= 1, 30, "wait() to follow the run")
            time.sleep(1.0)  # the stream was opened to time out at the deadline, 3 s away
            step(api.repo)

        threading.Thread(target=one_node_a_second_later, daemon=True).start()
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            client.wait(run_id, timeout_s=3)
        assert time.monotonic() - started >= 3
    streams = [r for r in transport.requests if r.url.path.endswith("/events")]
    assert len(streams) >= 2  # reopened after the event, with the time left
    assert streams[-1].headers["last-event-id"]


def test_wait_polls_when_the_stream_is_unusable(api: LiveApi) -> None:
    proxy = CutProxy(api.port, refuse=b"/events")  # e.g. a proxy that drops streams
    patient = RetryPolicy(initial_s=0.01, max_s=0.05, reconnect_for_s=0.3)
    try:
        with Client(proxy.url, api.acme, retry_policy=patient) as client:
            run_id = client.submit(CHAIN).run_id
            worker = threading.Thread(target=lambda: (
                wait_for(lambda: any(b"/events" in r for r in proxy.requests), 30,
                         "wait() to try the stream"),
                drive(api.repo)), daemon=True)
            worker.start()
            run = client.wait(run_id, timeout_s=120)
            worker.join(30)
    finally:
        proxy.close()
    assert run.status == "succeeded"
    assert any(b"/events" in r for r in proxy.requests)
