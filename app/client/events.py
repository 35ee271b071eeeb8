"""Following a run's event stream: a small Server-Sent Events parser (the WHATWG rules
the server's framing needs) and the cursor that makes a stream resumable: the last event
id for Last-Event-ID, each event yielded once, and whether the run has finished."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from dagq.client._http import RetryPolicy
from dagq.errors import Unavailable
from dagq.models import RunEvent
from dagq.states import TERMINAL_RUN_EVENTS


@dataclass(frozen=True)
class StreamEvent:
    """An SSE event that is not a row of dagq.run_events (e.g. a newer server's
    `node_stream` chunk): its id as sent, its type, and its data (parsed JSON if it is)."""

    id: str | None
    type: str
    data: Any

    @property
    def node_key(self) -> str | None:
        """The node it is about, when its data names one (as a RunEvent's node_key)."""
        key = self.data.get("node_key") if isinstance(self.data, dict) else None
        return key if isinstance(key, str) else None


Event = RunEvent | StreamEvent


@dataclass(frozen=True)
class SseMessage:
    id: str | None
    event: str
    data: str


class SseParser:
    """Lines in, messages out. `last_id` is the id of the last complete message (an id in
    a message cut off by a dropped connection does not count)."""

    def __init__(self, last_id: str | None = None) -> None:
        self.last_id = last_id
        self.reset()

    def reset(self) -> None:
        """A new connection: forget the partial message of the previous one."""
        self._data: list[str] = []
        self._event = ""
        self._id = self.last_id

    def feed(self, line: str) -> SseMessage | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the server's keep-alive ping
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._id = value
        return None  # "retry" and unknown fields are ignored

    def _dispatch(self) -> SseMessage | None:
        self.last_id = self._id
        data, event = "\n".join(self._data), self._event or "message"
        had_data = bool(self._data)
        self._data, self._event = [], ""
        return SseMessage(self._id, event, data) if had_data else None


def typed(message: SseMessage) -> Event:
    """A run event as the API's RunEvent model; anything else as a StreamEvent."""
    try:
        data: Any = json.loads(message.data)
    except ValueError:
        data = message.data
    if isinstance(data, dict) and data.get("type") == message.event:
        try:
            return RunEvent.model_validate(data)
        except ValidationError:
            pass
    return StreamEvent(message.id, message.event, data)


def _sequence(event_id: str | int | None) -> int | None:
    try:
        return int(event_id) if event_id is not None else None
    except ValueError:
        return None


class EventCursor:
    """Where a followed stream is. Reconnects send `Last-Event-ID` (the id as the server
    sent it, opaque); a run event at or before the last one yielded is dropped, in case a
    server replays; `finished` is true while the latest run-level event is terminal.

    `settled`: the run was seen finished and no event has come since. A stream that ends
    without the terminal event is always reopened (the server replays what came after
    the cursor and closes after the terminal event); only a connection opened once the
    run was settled that brings nothing new ends the iteration (e.g. `after` was past the
    end). Checking the run after a connection instead could miss the events written
    between the connection's end and the check."""

    def __init__(self, after: int | str | None, policy: RetryPolicy) -> None:
        self.parser = SseParser(str(after) if after is not None else None)
        self.last_seq = _sequence(after)
        self.finished = False
        self.settled = False
        self.policy = policy
        self.failures = 0  # consecutive connections that ended without progress
        self._failing_since = 0.0
        self._yielded = 0
        self._yielded_at_connect = 0

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.parser.last_id is not None:
            headers["Last-Event-ID"] = self.parser.last_id
        return headers

    def connected(self) -> None:
        self.parser.reset()
        self._yielded_at_connect = self._yielded

    @property
    def progressed(self) -> bool:
        """Whether the current (or last) connection yielded an event."""
        return self._yielded > self._yielded_at_connect

    def feed(self, line: str) -> Event | None:
        message = self.parser.feed(line)
        if message is None:
            return None
        event = typed(message)
        if isinstance(event, RunEvent):
            if self.last_seq is not None and event.id <= self.last_seq:
                return None
            self.last_seq = event.id
            if event.node_key is None:  # a retry's run_queued reopens a finished run
                self.finished = event.type in TERMINAL_RUN_EVENTS
        self.failures = 0
        self.settled = False
        self._yielded += 1
        return event

    def dropped(self, error: Unavailable) -> float:
        """The connection failed or ended with the run still open: seconds to wait before
        reconnecting; raises `error` when reconnecting has failed for longer than the
        policy's `reconnect_for_s` (a restarting server gets that long to come back)."""
        now = time.monotonic()
        if self.failures == 0:
            self._failing_since = now
        self.failures += 1
        if now - self._failing_since >= self.policy.reconnect_for_s:
            raise error
        return self.policy.delay(self.failures, error)


def stream_ended_early(run_id: object) -> Unavailable:
    return Unavailable(f"the event stream of run {run_id} kept closing before the run "
                       "finished", code="stream_closed")
