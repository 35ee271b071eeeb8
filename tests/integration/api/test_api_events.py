"""GET /v1/runs/{id}/events: the JSON list, SSE framing, live following, and resuming with
Last-Event-ID (no event missed, none twice)."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from dagq.store import Store
from tests.harness.api import Api, assert_error
from tests.harness.drive import complete, drive

TERMINAL = {"run_succeeded", "run_failed", "run_partial_succeeded", "run_cancelled"}
CHAIN = {"name": "chain", "nodes": {
    "a": {"executor": "builtin.echo"},
    "b": {"executor": "builtin.echo", "depends_on": ["a"]},
    "c": {"executor": "builtin.echo", "depends_on": ["b"]},
    "d": {"executor": "builtin.echo", "depends_on": ["c"]},
}}


def parse_sse(text: str) -> list[dict[str, Any]]:
    """SSE frames (comments/pings skipped) as {id, event, data}."""
    frames = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        frame: dict[str, Any] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(": ")
            frame[field] = json.loads(value) if field == "data" else value
        if frame:
            frames.append(frame)
    return frames


def step(repo: Store, n: int = 1) -> int:
    """Run at most n leasable nodes; return how many ran."""
    done = 0
    for node in repo.leases.lease(worker="w", queue="default", limit=n, ttl_s=30):
        complete(repo, node.id, node.version, {"key": node.node_key})
        done += 1
    return done


def all_event_ids(api: Api, run_id: str) -> list[int]:
    events = api.client.get(f"/v1/runs/{run_id}/events?format=json",
                            headers=api.acme).json()
    return [e["id"] for e in events]


def test_json_variant_with_after_and_limit(api: Api) -> None:
    run_id = api.submit(api.acme, workflow=CHAIN)["run_id"]
    drive(api.repo)
    events = api.client.get(f"/v1/runs/{run_id}/events?format=json", headers=api.acme)
    assert events.status_code == 200 and events.headers["content-type"] == "application/json"
    body = events.json()
    assert body[0]["type"] == "run_queued" and body[-1]["type"] == "run_succeeded"
    assert all(e["run_id"] == run_id for e in body)
    ids = [e["id"] for e in body]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    after = api.client.get(f"/v1/runs/{run_id}/events?format=json&after={ids[4]}",
                           headers=api.acme).json()
    assert [e["id"] for e in after] == ids[5:]
    limited = api.client.get(f"/v1/runs/{run_id}/events?format=json&after={ids[1]}&limit=3",
                             headers=api.acme).json()
    assert [e["id"] for e in limited] == ids[2:5]
    for bad in ("format=xml", "after=-1", "after=x", "limit=0", "limit=10001"):
        assert_error(api.client.get(f"/v1/runs/{run_id}/events?{bad}", headers=api.acme),
                     422, "invalid_request")


def test_sse_of_a_finished_run_is_every_event_then_closes(api: Api) -> None:
    run_id = api.submit(api.acme, workflow=CHAIN)["run_id"]
    drive(api.repo)
    response = api.client.get(f"/v1/runs/{run_id}/events", headers=api.acme)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = parse_sse(response.text)
    assert [int(f["id"]) for f in frames] == all_event_ids(api, run_id)
    for frame in frames:
        assert frame["event"] == frame["data"]["type"]
        assert int(frame["id"]) == frame["data"]["id"]
    assert frames[-1]["event"] == "run_succeeded"


def test_last_event_id_resumes_exactly_after_it(api: Api) -> None:
    run_id = api.submit(api.acme, workflow=CHAIN)["run_id"]
    drive(api.repo)
    ids = all_event_ids(api, run_id)
    for i, last in enumerate(ids):
        response = api.client.get(f"/v1/runs/{run_id}/events",
                                  headers={**api.acme, "Last-Event-ID": str(last)})
        assert [int(f["id"]) for f in parse_sse(response.text)] == ids[i + 1:]
    # ?after= does the same for clients that cannot set headers; the header wins.
    response = api.client.get(f"/v1/runs/{run_id}/events?after={ids[2]}",
                              headers={**api.acme, "Last-Event-ID": str(ids[5])})
    assert [int(f["id"]) for f in parse_sse(response.text)] == ids[6:]
    for bad in ("abc", "-5", "99999999999999999999"):
        assert_error(api.client.get(f"/v1/runs/{run_id}/events",
                                    headers={**api.acme, "Last-Event-ID": bad}), 422)


def test_live_stream_follows_the_run_to_its_end(api: Api) -> None:
    run_id = api.submit(api.acme, workflow=CHAIN)["run_id"]
    result: dict[str, Any] = {}

    def watch() -> None:
        result["response"] = api.client.get(f"/v1/runs/{run_id}/events", headers=api.acme)

    watcher = threading.Thread(target=watch)
    watcher.start()
    hub = api.app.state.hub
    for _ in range(4):  # one node at a time, with the stream waiting in between
        _wait_for(lambda: hub.subscriber_count() == 1)
        assert step(api.repo) == 1
    watcher.join(timeout=30)
    assert not watcher.is_alive(), "the stream did not close after the terminal event"
    frames = parse_sse(result["response"].text)
    assert [int(f["id"]) for f in frames] == all_event_ids(api, run_id)
    assert frames[-1]["event"] == "run_succeeded"
    assert hub.subscriber_count() == 0


def test_disconnect_and_resume_misses_nothing_and_repeats_nothing(api: Api) -> None:
    run_id = api.submit(api.acme, workflow=CHAIN)["run_id"]
    step(api.repo)
    received: list[dict[str, Any]] = []
    with api.client.stream("GET", f"/v1/runs/{run_id}/events", headers=api.acme) as stream:
        buffer = ""
        for chunk in stream.iter_text():
            buffer += chunk
            if buffer.count("\r\n\r\n") >= 3:
                received = parse_sse(buffer)[:3]
                break
    assert len(received) == 3
    _wait_for(lambda: api.app.state.hub.subscriber_count() == 0)  # the stream was closed
    step(api.repo, 2)  # progress while disconnected
    rest: list[dict[str, Any]] = []
    resume = {**api.acme, "Last-Event-ID": received[-1]["id"]}
    watcher = threading.Thread(target=lambda: rest.extend(parse_sse(api.client.get(
        f"/v1/runs/{run_id}/events", headers=resume).text)))
    watcher.start()
    _wait_for(lambda: api.app.state.hub.subscriber_count() == 1)
    drive(api.repo)
    watcher.join(timeout=30)
    assert not watcher.is_alive()
    ids = [int(f["id"]) for f in received + rest]
    assert ids == all_event_ids(api, run_id)
    assert len(ids) == len(set(ids)) and rest[-1]["event"] == "run_succeeded"


def test_resume_after_the_terminal_event_closes_at_once(api: Api) -> None:
    run_id = api.submit(api.acme)["run_id"]
    drive(api.repo)
    last = all_event_ids(api, run_id)[-1]
    response = api.client.get(f"/v1/runs/{run_id}/events",
                              headers={**api.acme, "Last-Event-ID": str(last)})
    assert response.status_code == 200 and parse_sse(response.text) == []


def test_cancelled_run_stream_ends_with_run_cancelled(api: Api) -> None:
    run_id = api.submit(api.acme, workflow=CHAIN)["run_id"]
    api.client.post(f"/v1/runs/{run_id}/cancel", headers=api.acme)
    frames = parse_sse(api.client.get(f"/v1/runs/{run_id}/events", headers=api.acme).text)
    assert frames[-1]["event"] == "run_cancelled"


def test_events_of_unknown_runs_are_404(api: Api) -> None:
    for run_id in (uuid.uuid4(), "nope"):
        assert_error(api.client.get(f"/v1/runs/{run_id}/events", headers=api.acme), 404)
        assert_error(api.client.get(f"/v1/runs/{run_id}/events?format=json",
                                    headers=api.acme), 404)


def _wait_for(predicate, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_streams_survive_losing_the_listen_connection(api: Api, sql) -> None:
    run_id = api.submit(api.acme, workflow=CHAIN)["run_id"]
    result: dict[str, Any] = {}
    watcher = threading.Thread(target=lambda: result.setdefault("r", api.client.get(
        f"/v1/runs/{run_id}/events", headers=api.acme)))
    watcher.start()
    hub = api.app.state.hub
    _wait_for(lambda: hub.subscriber_count() == 1 and hub.listening.is_set())
    killed = sql.execute(
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
        "WHERE datname = current_database() AND query = 'LISTEN dagq_events'").fetchone()
    assert killed["n"] == 1
    drive(api.repo)
    watcher.join(timeout=30)
    assert not watcher.is_alive()
    frames = parse_sse(result["r"].text)
    assert [int(f["id"]) for f in frames] == all_event_ids(api, run_id)
    _wait_for(lambda: hub.listening.is_set())  # reconnected
