"""Following one node's streamed text on a run's event stream: the pieces of its
attempts in order, with a reset flag where a new attempt began (the earlier attempt's
text is void: a retry streams from the start)."""

from __future__ import annotations

from dagq.client.events import Event, StreamEvent
from dagq.models import RunEvent
from dagq.states import TERMINAL_NODE_STATUSES

NODE_ENDS = frozenset(f"node_{status}" for status in TERMINAL_NODE_STATUSES)


class TextPiece(str):
    """A piece of streamed text (a `str`), with the attempt it belongs to; `reset` is
    true on the first piece of an attempt after an earlier attempt's pieces: drop those."""

    attempt: int
    reset: bool

    def __new__(cls, text: str, *, attempt: int, reset: bool = False) -> TextPiece:
        piece = super().__new__(cls, text)
        piece.attempt = attempt
        piece.reset = reset
        return piece


class TextFollower:
    """Feed it a run's events; it answers the node's text pieces and when to stop."""

    def __init__(self, node_key: str) -> None:
        self.node_key = node_key
        self.attempt: int | None = None  # of the pieces yielded so far
        self.ended = False

    def feed(self, event: Event) -> TextPiece | None:
        if event.node_key != self.node_key:
            return None
        if isinstance(event, RunEvent):
            self.ended = event.type in NODE_ENDS
            return None
        if not isinstance(event, StreamEvent) or event.type != "node_stream":
            return None
        data = event.data if isinstance(event.data, dict) else {}
        attempt, text = data.get("attempt"), data.get("text")
        if not isinstance(attempt, int) or not isinstance(text, str) or not text:
            return None
        reset = self.attempt is not None and attempt != self.attempt
        self.attempt = attempt
        return TextPiece(text, attempt=attempt, reset=reset)
