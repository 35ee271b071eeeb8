"""Streamed output end to end: real workers stream through Postgres to the real API's
SSE stream and the Python client; resumed streams lose and repeat nothing; a killed
worker's next attempt streams on its own; a paused worker whose lease was reclaimed
cannot append to the new attempt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from dagq import Client, service
from dagq.client.events import SseParser, typed
from dagq.store import Store
from tests.harness.e2e import registered, start_api
from tests.harness.procs import ROOT, WorkerFleet, free_port, wait_for, wait_for_run

pytestmark = pytest.mark.e2e


def one_node(executor: str, **node) -> dict:
    return {"name": executor.replace(".", "-"), "nodes": {"llm": {"executor": executor, **node}}}


def sse_frames(url: str, headers: dict[str, str], stop_after_chunks: int | None = None):
    """SSE messages of one connection; with `stop_after_chunks`, hang up after that many
    node_stream events (mid-stream)."""
    parser, frames, seen = SseParser(), [], 0
    with httpx.stream("GET", url, headers=headers, timeout=60) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            message = parser.feed(line)
            if message is None:
                continue
            frames.append(message)
            seen += message.event == "node_stream"
            if stop_after_chunks is not None and seen >= stop_after_chunks:
                return frames
    return frames


def test_a_thousand_chunks_arrive_in_order_and_resume_exactly_once(
        fleet: WorkerFleet, repo: Store) -> None:
    url = start_api(fleet)
    key = service.create_api_key(repo, "acme")
    headers = {"Authorization": f"Bearer {key}"}
    fleet.start(threads=2)
    with Client(url, key) as client:
        run_id = client.submit(one_node("builtin.stream", params={
            "chunks": 1000, "interval_s": 0.002, "text": "{i},"})).run_id
        events = f"{url}/v1/runs/{run_id}/events"
        first = sse_frames(events, headers, stop_after_chunks=400)  # while it streams
        rest = sse_frames(events, {**headers, "Last-Event-ID": first[-1].id})
        texts = [typed(m).data["text"] for m in first + rest if m.event == "node_stream"]
        assert texts == [f"{i}," for i in range(1000)]  # none lost, none twice, in order
        assert [m.event for m in rest][-1] == "run_succeeded"
        pieces = list(client.stream_text(run_id, "llm"))
        assert "".join(pieces) == "".join(texts) and not any(p.reset for p in pieces)
        run = client.run(run_id)
        body = httpx.get(f"{url}/v1/runs/{run_id}/nodes/llm/stream", headers=headers).json()
    assert run.status == "succeeded"
    assert body["text"] == run.nodes[0].outputs["text"] and body["chunks"] == 1000
    assert body["complete"] is True


def test_a_thread_the_executor_started_streams_too(fleet: WorkerFleet, repo: Store,
                                                    sql) -> None:
    fleet.start(threads=2)
    registered(sql, "test.stream_thread")
    run_id = service.submit(repo, tenant="t", workflow=one_node("test.stream_thread")).run_id
    assert wait_for_run(repo, run_id).status == "succeeded"
    got = repo.streams.node_stream(run_id, "llm", None, None)
    assert got["text"] == "".join(f"t{i} " for i in range(10))
    assert got["data"] == [{"done": 10}] and got["complete"]


def test_a_killed_workers_next_attempt_streams_apart_and_the_client_resets(
        fleet: WorkerFleet, repo: Store, sql) -> None:
    url = start_api(fleet)
    key = service.create_api_key(repo, "acme")
    fleet.start_sweeper()
    fleet.start(threads=2)
    fleet.start(threads=2)
    registered(sql, "test.stream_crash")
    with Client(url, key) as client:
        run_id = client.submit(one_node("test.stream_crash")).run_id
        pieces = list(client.stream_text(run_id, "llm"))
    resets = [n for n, p in enumerate(pieces) if p.reset]
    assert len(resets) == 1, pieces
    assert [p.attempt for p in pieces[:resets[0]]] == [1] * resets[0]
    assert "".join(pieces[resets[0]:]) == "".join(f"a2.{i} " for i in range(30))
    assert wait_for_run(repo, run_id).status == "succeeded"
    assert repo.streams.node_stream(run_id, "llm", None, None)["attempt"] == 2
    assert repo.streams.node_stream(run_id, "llm", 1, None)["text"].startswith("a1.0 a1.1 ")


def test_a_paused_worker_cannot_append_after_its_lease_was_reclaimed(
        fleet: WorkerFleet, repo: Store, sql) -> None:
    fleet.start_sweeper()
    paused = fleet.start(threads=2, DAGQ_LEASE_TTL_S="1.5")
    registered(sql, "test.stream_slowly")
    run_id = service.submit(repo, tenant="t", workflow=one_node(
        "test.stream_slowly", params={"seconds": 4}, backoff={"initial_s": 0.1})).run_id
    wait_for(lambda: repo.streams.node_stream(run_id, "llm", None, None)["chunks"] >= 5, 30,
             "the first chunks")
    os.kill(paused.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: sql.execute(
            "SELECT 1 FROM dagq.run_events WHERE run_id = %s AND type = 'node_lease_expired'",
            (run_id,)).fetchone(), 30, "the sweeper to reclaim the lease")
        fleet.start(threads=2)  # attempt 2 runs here
        wait_for(lambda: repo.streams.node_stream(run_id, "llm", None, None)["attempt"] == 2 and
                 repo.streams.node_stream(run_id, "llm", 2, None)["chunks"] >= 3, 30,
                 "attempt 2's chunks")
    finally:
        os.kill(paused.pid, signal.SIGCONT)  # its buffered and next chunks are fenced off
    assert wait_for_run(repo, run_id).status == "succeeded"
    expired_at = sql.execute(
        "SELECT created_at FROM dagq.run_events WHERE run_id = %s AND type = "
        "'node_lease_expired'", (run_id,)).fetchone()["created_at"]
    late = sql.execute("SELECT count(*) AS n FROM dagq.node_stream WHERE run_id = %s AND "
                       "attempt = 1 AND created_at > %s", (run_id, expired_at)).fetchone()["n"]
    assert late == 0
    wait_for(lambda: sql.execute("SELECT value FROM dagq.counters WHERE name = "
                                 "'stale_stream_chunks'").fetchone(), 20,
             "the paused worker's late chunks to be counted")
    text = repo.streams.node_stream(run_id, "llm", 2, None)["text"]
    assert text.startswith("s2.0 s2.1 ") and "s1." not in text


def test_the_chat_example_streams_the_llm_tokens_to_the_browser(
        fleet: WorkerFleet, repo: Store, sql, tmp_path: Path) -> None:
    api_url = start_api(fleet)
    fleet.start(threads=2, DAGQ_ACTOR_MODULES="examples.chat_executors")
    registered(sql, "chat.llm")
    key = service.create_api_key(repo, "web")
    port = free_port()
    log = open(tmp_path / "chat.log", "wb")  # noqa: SIM115 - the process owns it
    env = {**os.environ, "DAGQ_URL": api_url, "DAGQ_API_KEY": key, "PYTHONPATH": str(ROOT)}
    app = subprocess.Popen([sys.executable, str(ROOT / "examples" / "chat_app.py"), "--port",
                            str(port)], cwd=tmp_path, env=env, stdout=log,
                           stderr=subprocess.STDOUT)
    fleet.procs.append(app)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(base, timeout=2).status_code == 200
        except httpx.TransportError:
            return app.poll() is not None

    wait_for(up, 60, "the chat example")
    assert app.poll() is None, (tmp_path / "chat.log").read_text()
    frames = sse_frames(f"{base}/chat?question=refund%3F&request_id=r1", {})
    tokens = [json.loads(m.data) for m in frames if m.event == "token"]
    done = json.loads(frames[-1].data)
    assert frames[-1].event == "done" and done["status"] == "succeeded"
    assert len(tokens) > 5 and "".join(tokens).strip() == done["answer"]
    assert httpx.get(f"{base}/chat?question=x").status_code == 400
