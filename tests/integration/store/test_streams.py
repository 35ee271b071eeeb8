"""Streamed node output on a real Postgres: the fenced batch write, the run's feed (events
and chunks, resumable, exactly once), the node's text so far, retention and retry, and
the HTTP routes' errors."""

from __future__ import annotations

import io
import uuid

import pytest

from dagq.cli.follow import FeedPrinter
from dagq.client.events import SseParser, typed
from dagq.client.text import TextFollower
from dagq.store import Store
from dagq.store.streams import FeedCursor, StreamChunk
from dagq.workers.streams import StreamWriter
from tests.harness.api import Api, assert_error
from tests.harness.drive import complete
from tests.harness.specs import spec

ONE = {"name": "one", "nodes": {"llm": {"executor": "builtin.noop", "max_attempts": 3}}}


def start(repo: Store, tenant: str = "acme"):
    run_id = repo.submissions.submit_run(tenant=tenant, spec=spec(ONE["nodes"], name="one")).run_id
    [node] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    return run_id, node


def chunks(node, texts: list[str], first_seq: int = 1) -> list[StreamChunk]:
    return [StreamChunk(node.id, node.version, node.run_id, first_seq + i, text)
            for i, text in enumerate(texts)]


def stale_chunks(sql) -> int:
    row = sql.execute("SELECT value FROM dagq.counters WHERE name = 'stale_stream_chunks'"
                      ).fetchone()
    return row["value"] if row else 0


def test_chunks_of_the_lease_holder_are_written_and_others_dropped(repo: Store, sql) -> None:
    run_id, node = start(repo)
    assert repo.streams.append_stream(chunks(node, ["Hel", "lo"])) == 2
    old = StreamChunk(node.id, node.version - 1, run_id, 3, "stale")
    assert repo.streams.append_stream([old]) == 0 and stale_chunks(sql) == 1
    assert repo.streams.append_stream(chunks(node, ["Hel"])) == 0  # a retried flush: not twice,
    assert stale_chunks(sql) == 1  # and not counted as stale either
    assert complete(repo, node.id, node.version, {})
    assert repo.streams.append_stream(chunks(node, ["late"], first_seq=9)) == 0  # lease is gone
    rows = sql.execute("SELECT attempt, seq, text FROM dagq.node_stream ORDER BY id").fetchall()
    assert [(r["attempt"], r["seq"], r["text"]) for r in rows] == [(1, 1, "Hel"), (1, 2, "lo")]


def test_a_new_attempt_streams_on_its_own_and_the_old_one_is_fenced(repo: Store, sql) -> None:
    run_id, first = start(repo)
    repo.streams.append_stream(chunks(first, ["one "]))
    assert repo.leases.fail(first.id, first.version, {"type": "Boom", "message": "x"}) == "retry"
    sql.execute("UPDATE dagq.node_tasks SET available_at = now() WHERE id = %s", (first.id,))
    [second] = repo.leases.lease(worker="w2", queue="default", limit=1, ttl_s=30)
    assert repo.streams.append_stream(chunks(first, ["ghost"], first_seq=2)) == 0
    assert repo.streams.append_stream(chunks(second, ["two"])) == 1
    latest = repo.streams.node_stream(run_id, "llm", None, "acme")
    assert latest == {"attempt": 2, "text": "two", "data": [], "chunks": 1, "complete": False}
    assert repo.streams.node_stream(run_id, "llm", 1, "acme")["text"] == "one "
    assert repo.streams.node_stream(run_id, "llm", 1, "acme")["complete"] is True


def test_the_feed_interleaves_and_resumes_exactly_once(repo: Store) -> None:
    run_id, node = start(repo)
    repo.streams.append_stream(chunks(node, [f"t{i} " for i in range(7)]))
    complete(repo, node.id, node.version, {})
    feed = repo.streams.run_feed(run_id, FeedCursor(), limit=100)
    everything, cut = feed.items, feed.cut
    assert not cut and feed.run_status == "succeeded"
    kinds = [(i.kind, i.row["type"]) for i in everything]
    assert kinds.index(("event", "node_started")) < kinds.index(("chunk", "node_stream"))
    assert kinds[-1] == ("event", "run_succeeded")
    assert kinds.index(("event", "node_succeeded")) > max(
        n for n, k in enumerate(kinds) if k[0] == "chunk")
    # Page by page (3 of each kind a page), from each page's last cursor.
    seen, cursor = [], FeedCursor()
    while True:
        read = repo.streams.run_feed(run_id, cursor, limit=3)
        page, cut = read.items, read.cut
        seen += [(i.kind, i.row["id"]) for i in page]
        if page:
            cursor = page[-1].cursor
        if not cut and not page:
            break
    assert seen == [(i.kind, i.row["id"]) for i in everything]
    # A cursor in the middle resumes after it; without chunks, events only.
    middle = everything[5].cursor
    rest = repo.streams.run_feed(run_id, FeedCursor.parse(str(middle)), limit=100).items
    assert [i.row["id"] for i in rest] == [i.row["id"] for i in everything[6:]]
    events_only = repo.streams.run_feed(run_id, FeedCursor(), limit=100, chunks=False).items
    gone = repo.streams.run_feed(uuid.uuid4(), FeedCursor(), limit=100)
    assert (gone.items, gone.run_status) == ([], None)
    assert all(i.kind == "event" for i in events_only)


def test_cursor_text_is_the_event_id_until_a_chunk_was_read() -> None:
    assert str(FeedCursor(12, 0)) == "12" and str(FeedCursor(12, 5)) == "12.5"
    assert FeedCursor.parse("12") == FeedCursor(12, 0)
    assert FeedCursor.parse("12.5") == FeedCursor(12, 5)


def test_sse_and_json_carry_chunks_and_resume_with_last_event_id(api: Api) -> None:
    run_id, node = start(api.repo)
    api.repo.streams.append_stream(chunks(node, ["a", "b", "c"]) + [
        StreamChunk(node.id, node.version, run_id, 4, data={"done": 3, "total": 3})])
    complete(api.repo, node.id, node.version, {})
    url = f"/v1/runs/{run_id}/events"
    frames = sse(api, url)
    streamed = [f for f in frames if f.event == "node_stream"]
    assert [typed(f).data.get("text") for f in streamed] == ["a", "b", "c", None]
    assert typed(streamed[-1]).data == {"node_key": "llm", "attempt": 1, "seq": 4,
                                        "data": {"done": 3, "total": 3}}
    middle = streamed[1].id
    assert "." in middle
    rest = sse(api, url, {"Last-Event-ID": middle})
    assert [f.id for f in rest] == [f.id for f in frames[frames.index(streamed[1]) + 1:]]
    listed = api.client.get(url, params={"format": "json", "after": middle},
                            headers=api.acme).json()
    assert [item["cursor"] for item in listed] == [f.id for f in rest]
    assert listed[0] == {"type": "node_stream", "run_id": str(run_id), "node_key": "llm",
                         "attempt": 1, "seq": 3, "text": "c",
                         "created_at": listed[0]["created_at"], "cursor": rest[0].id}
    plain = sse(api, url + "?stream=false")
    assert [f.event for f in plain] == [f.event for f in frames if f.event != "node_stream"]


def sse(api: Api, url: str, headers: dict[str, str] | None = None) -> list:
    parser = SseParser()
    text = api.client.get(url, headers={**api.acme, **(headers or {})}).text
    return [m for m in map(parser.feed, [*text.splitlines(), ""]) if m is not None]


def test_node_stream_route_and_its_errors(api: Api) -> None:
    run_id, node = start(api.repo)
    api.repo.streams.append_stream(chunks(node, ["Hello, ", "world"]))
    url = f"/v1/runs/{run_id}/nodes/llm/stream"
    body = api.client.get(url, headers=api.acme).json()
    assert body == {"attempt": 1, "text": "Hello, world", "data": [], "chunks": 2,
                    "complete": False}
    assert_error(api.client.get(url, params={"attempt": 2}, headers=api.acme), 404)  # not yet
    assert_error(api.client.get(url, params={"attempt": 0}, headers=api.acme), 422)
    assert_error(api.client.get(url, params={"attempt": "x"}, headers=api.acme), 422)
    assert_error(api.client.get(url, headers=api.globex), 404)  # another tenant's run
    assert_error(api.client.get(f"/v1/runs/{run_id}/nodes/nope/stream", headers=api.acme), 404)
    assert_error(api.client.get("/v1/runs/not-a-uuid/nodes/llm/stream", headers=api.acme), 404)
    events = f"/v1/runs/{run_id}/events"
    for bad in ("1.", "x.1", "1.2.3", "-1"):
        assert_error(api.client.get(events, headers={**api.acme, "Last-Event-ID": bad}), 422)
        assert_error(api.client.get(events, params={"format": "json", "after": bad},
                                    headers=api.acme), 422)
    assert_error(api.client.get(events, params={"stream": "maybe"}, headers=api.acme), 422)


def test_retention_and_retry_remove_a_runs_chunks(repo: Store, sql) -> None:
    run_id, node = start(repo)
    repo.streams.append_stream(chunks(node, ["x", "y"]))
    repo.leases.fail(node.id, node.version, {"type": "Boom", "message": "x"}, retryable=False)
    repo.runs.retry_run(run_id, "acme")  # the node runs again from attempt 1: its text is void
    assert sql.execute("SELECT count(*) AS n FROM dagq.node_stream").fetchone()["n"] == 0
    [again] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    repo.streams.append_stream(chunks(again, ["z"]))
    complete(repo, again.id, again.version, {})
    sql.execute("UPDATE dagq.runs SET finished_at = now() - interval '10 days'")
    assert repo.maintenance.prune(retention_s=86400) == 1
    # The run is gone; its chunks go with their day's partition (issue 30), dropped once
    # that day is past the retention and no stored run is older.
    later = sql.execute("SELECT now() + interval '3 days' AS t").fetchone()["t"]
    dropped = repo.partitions.retire_event_partitions(retention_s=86400, now=later)
    assert "node_stream_p0" in dropped
    assert sql.execute("SELECT count(*) AS n FROM dagq.node_stream").fetchone()["n"] == 0


def test_the_writer_batches_checks_and_writes_a_finished_nodes_chunks(repo: Store) -> None:
    run_id, node = start(repo)
    writer = StreamWriter(repo, flush_s=60, flush_bytes=10**6)  # started: only finish flushes
    writer.start()
    try:
        key = (node.id, node.version)
        for i in range(50):
            writer.append(key, run_id, f"{i},")
        writer.append(key, run_id, data={"done": 50})
        with pytest.raises(ValueError, match="JSON object"):
            writer.append(key, run_id, data=[1])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="cannot be stored"):
            writer.append(key, run_id, "nul \x00")
        with pytest.raises(ValueError, match="text or data"):
            writer.append(key, run_id)
        assert repo.streams.node_stream(run_id, "llm", None, "acme")["chunks"] == 0  # buffered
        writer.finish(key)
        got = repo.streams.node_stream(run_id, "llm", None, "acme")
        assert got["text"] == "".join(f"{i}," for i in range(50))
        assert got["data"] == [{"done": 50}] and writer.written == 51
    finally:
        writer.stop()


def test_text_follower_resets_on_a_new_attempt_and_stops_at_the_end() -> None:
    from dagq.client.events import StreamEvent
    from dagq.models import RunEvent

    follower = TextFollower("llm")
    piece = follower.feed(StreamEvent("1.1", "node_stream",
                                      {"node_key": "llm", "attempt": 1, "seq": 1, "text": "a"}))
    assert piece == "a" and not piece.reset
    assert follower.feed(StreamEvent("1.2", "node_stream", {"node_key": "other", "attempt": 1,
                                                            "seq": 1, "text": "no"})) is None
    piece = follower.feed(StreamEvent("2.3", "node_stream",
                                      {"node_key": "llm", "attempt": 2, "seq": 1, "text": "b"}))
    assert piece == "b" and piece.reset and piece.attempt == 2
    end = RunEvent.model_validate({"id": 9, "run_id": "00000000-0000-0000-0000-000000000000",
                                   "node_key": "llm", "type": "node_succeeded", "attempt": 2,
                                   "data": {}, "created_at": "2026-01-01T00:00:00Z"})
    follower.feed(end)
    assert follower.ended


def test_follow_printer_runs_text_on_and_marks_a_new_attempt() -> None:
    out = io.StringIO()
    printer = FeedPrinter(out)
    printer.event("node_started", "llm", 1, {})
    printer.chunk("llm", 1, "Hel", None)
    printer.chunk("llm", 1, "lo", None)
    printer.event("node_lease_expired", "llm", 1, {"error": {"message": "gone"}})
    printer.chunk("llm", 2, "Hi", None)
    assert out.getvalue() == ("node_started llm (try 1)\n[llm] Hello\n"
                              "node_lease_expired llm (try 1): gone\n"
                              "[llm] (attempt 2: earlier text void) Hi")


def test_the_client_reads_chunks_live_and_stored_events_without_them(db_url: str) -> None:
    from dagq import Client
    from dagq.client import StreamEvent
    from dagq.models import RunEvent
    from tests.harness.live_api import LiveApi

    with LiveApi(db_url) as live, Client(live.url, live.admin) as client:
        run_id, node = start(live.repo)
        live.repo.streams.append_stream(chunks(node, ["Hel", "lo"]))
        complete(live.repo, node.id, node.version, {})
        followed = list(client.events(run_id))
        streamed = [e for e in followed if isinstance(e, StreamEvent)]
        assert [e.data["text"] for e in streamed] == ["Hel", "lo"]
        assert "".join(client.stream_text(run_id, "llm")) == "Hello"
        stored = list(client.events(run_id, follow=False))
        assert stored and all(isinstance(e, RunEvent) for e in stored)
        assert [e.id for e in stored] == [e.id for e in followed if isinstance(e, RunEvent)]
        after = list(client.events(run_id, after=streamed[0].id, follow=False))
        assert [e.id for e in after] == [e.id for e in stored
                                         if e.id > int(streamed[0].id.split(".")[0])]


def test_requeue_node_voids_the_reset_attempts_chunks(repo: Store, sql) -> None:
    run_id, node = start(repo)
    repo.streams.append_stream(chunks(node, ["old-1 ", "old-2 "]))
    repo.leases.fail(node.id, node.version, {"type": "Boom", "message": "x"}, retryable=False)
    sql.execute("SELECT dagq.requeue_node(%s, 'llm')", (run_id,))
    [again] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    assert again.attempts == 1
    assert repo.streams.append_stream(chunks(again, ["new"])) == 1 and stale_chunks(sql) == 0
    assert repo.streams.node_stream(run_id, "llm", None, "acme")["text"] == "new"


def test_a_thread_streaming_after_its_executor_returned_is_refused(repo: Store) -> None:
    from dagq.workers.streams import StreamClosed

    run_id, node = start(repo)
    writer, key = StreamWriter(repo), (node.id, node.version)
    writer.append(key, run_id, "in time")
    writer.finish(key)
    with pytest.raises(StreamClosed):
        writer.append(key, run_id, "too late")
    assert repo.streams.node_stream(run_id, "llm", None, "acme")["text"] == "in time"


def test_follow_ends_when_the_terminal_event_is_on_an_earlier_page(repo: Store) -> None:
    from dagq.cli.backend import LocalBackend
    from dagq.cli.follow import follow
    from dagq.config import get_settings

    run_id, node = start(repo)
    repo.runs.cancel_run(run_id, "acme")  # the run ends while its node still streams
    repo.streams.append_stream(chunks(node, [f"{i} " for i in range(1200)]))  # > two pages
    out = io.StringIO()
    assert follow(LocalBackend(repo, get_settings()), run_id, FeedPrinter(out)) == "cancelled"
    assert "run_cancelled" in out.getvalue() and "1199 " in out.getvalue()


def test_stream_text_of_a_retried_run_is_the_new_attempts(db_url: str) -> None:
    from dagq import Client
    from tests.harness.live_api import LiveApi

    with LiveApi(db_url) as live, Client(live.url, live.admin) as client:
        run_id, first = start(live.repo)
        live.repo.streams.append_stream(chunks(first, ["old"]))
        live.repo.leases.fail(first.id, first.version, {"type": "Boom", "message": "x"},
                              retryable=False)
        live.repo.runs.retry_run(run_id, "acme")
        [again] = live.repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
        live.repo.streams.append_stream(chunks(again, ["new ", "text"]))
        complete(live.repo, again.id, again.version, {})
        pieces = list(client.stream_text(run_id, "llm"))
    assert "".join(pieces) == "new text" and not pieces[0].reset  # the old text was voided
