"""The client's pure parts: SSE parsing and the event cursor, Retry-After, and which
failures may be retried."""

from __future__ import annotations

import json
import time
from email.utils import formatdate

import httpx
import pytest

from dagq.client import RetryPolicy, StreamEvent
from dagq.client._http import error_from_response, may_retry, retry_after_s, transport_error
from dagq.client.events import EventCursor, SseParser
from dagq.errors import (
    ApiError,
    InvalidWorkflow,
    RateLimited,
    ServerError,
    Unavailable,
)
from dagq.models import RunEvent

RUN = "6f1c0b52-3f7e-4f58-9a55-5d2f7b1c9e10"


def event_lines(event_id: int, type_: str, node_key: str | None = "a") -> list[str]:
    data = {"id": event_id, "run_id": RUN, "node_key": node_key, "type": type_,
            "attempt": 1, "data": {}, "created_at": "2026-01-01T00:00:00Z"}
    return [f"id: {event_id}", f"event: {type_}", f"data: {json.dumps(data)}", ""]


def feed_all(cursor: EventCursor, lines: list[str]) -> list:
    return [e for e in (cursor.feed(line) for line in lines) if e is not None]


def test_sse_framing_rules() -> None:
    parser = SseParser()
    lines = [": ping", "data:first", "data: second", "id:7", "event:custom", "",
             "id: 8", "", "retry: 100", "data", "", "unknown: x", "data: z"]
    messages = [m for m in (parser.feed(line) for line in lines) if m is not None]
    assert [(m.id, m.event, m.data) for m in messages] == [
        ("7", "custom", "first\nsecond"), ("8", "message", "")]
    assert parser.last_id == "8"  # an id-only frame still moves the last id
    parser.reset()  # "data: z" was never completed: dropped with its connection
    assert parser.feed("") is None and parser.last_id == "8"


def test_cursor_types_events_and_yields_each_once() -> None:
    cursor = EventCursor(None, RetryPolicy())
    events = feed_all(cursor, event_lines(1, "run_queued", None) + event_lines(2, "node_queued"))
    assert [type(e) for e in events] == [RunEvent, RunEvent] and cursor.headers()[
        "Last-Event-ID"] == "2"
    cursor.connected()  # a server that replays after a reconnect
    again = feed_all(cursor, event_lines(1, "run_queued", None) + event_lines(3, "node_started"))
    assert [e.id for e in again] == [3]
    assert not cursor.finished
    feed_all(cursor, event_lines(4, "run_failed", None))
    assert cursor.finished
    feed_all(cursor, event_lines(5, "run_queued", None))  # a retry reopens the run
    assert not cursor.finished


def test_unknown_event_types_and_composite_ids_pass_through() -> None:
    cursor = EventCursor("41", RetryPolicy())
    assert cursor.headers()["Last-Event-ID"] == "41"
    [chunk] = feed_all(cursor, ["id: 41.3", "event: node_stream",
                                'data: {"node_key": "a", "text": "hel"}', ""])
    assert chunk == StreamEvent("41.3", "node_stream", {"node_key": "a", "text": "hel"})
    assert chunk.node_key == "a"
    assert cursor.headers()["Last-Event-ID"] == "41.3"  # opaque: sent back as received
    [text] = feed_all(cursor, ["event: note", "data: not json", ""])
    assert text == StreamEvent("41.3", "note", "not json") and text.node_key is None
    assert [e.id for e in feed_all(cursor, event_lines(42, "node_succeeded"))] == [42]


def reply(status: int, body: object = None, headers: dict[str, str] | None = None,
          text: str | None = None) -> httpx.Response:
    request = httpx.Request("GET", "http://dagq.test/v1/runs")
    if text is not None:
        return httpx.Response(status, text=text, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


def test_error_replies_map_to_classes() -> None:
    body = {"error": {"code": "invalid_workflow", "message": "a cycle", "details": ["a"]}}
    error = error_from_response(reply(422, body))
    assert isinstance(error, InvalidWorkflow) and error.details == ["a"]
    limited = error_from_response(reply(429, {"error": {"code": "quota_exceeded",
                                                        "message": "too many"}},
                                        {"Retry-After": "3"}))
    assert isinstance(limited, RateLimited) and limited.code == "quota_exceeded"
    assert limited.retry_after == 3.0
    proxy = error_from_response(reply(502, text="<html>bad gateway</html>"))
    assert isinstance(proxy, Unavailable) and proxy.code == "http_502"
    assert "bad gateway" in proxy.message
    assert isinstance(error_from_response(reply(500, text="")), ServerError)
    teapot = error_from_response(reply(418, text="short and stout"))
    assert type(teapot) is ApiError and teapot.status == 418


def test_retry_after_and_what_may_be_retried() -> None:
    policy = RetryPolicy(max_retry_after_s=10)
    assert retry_after_s("2.5") == 2.5 and retry_after_s(None) is None
    assert retry_after_s("soon") is None and retry_after_s("-3") == 0.0
    assert 50 < retry_after_s(formatdate(time.time() + 60, usegmt=True)) <= 61
    busy = Unavailable("down", status=503)
    assert may_retry(busy, True, policy) and not may_retry(busy, False, policy)
    busy.retry_after = 60
    assert not may_retry(busy, True, policy)  # asks for longer than we wait
    limited = RateLimited("slow down", status=429)
    limited.retry_after = 4
    assert may_retry(limited, False, policy) and policy.delay(1, limited) == 4
    request = httpx.Request("POST", "http://dagq.test/v1/runs")
    refused = transport_error(httpx.ConnectError("refused", request=request), "u")
    assert may_retry(refused, False, policy)  # never sent
    cut = transport_error(httpx.ReadError("reset", request=request), "u")
    assert may_retry(cut, True, policy) and not may_retry(cut, False, policy)
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
