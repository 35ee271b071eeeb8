"""Following one node's streamed text on a run's event stream: the pieces of its
attempts in order, with a reset flag where a new attempt began (the earlier attempt's
text is void: a retry streams from the start)."""

from __future__ import annotations

from dagq.client.events import Event, StreamEvent
from dagq.models import RunEvent
from dagq.states import TERMINAL_NODE_STATUSES

NODE_ENDS = frozenset(f"node_{status}" for status in TERMINAL_NODE_STATUSES)
NODE_STARTS = frozenset({"node_queued", "node_started"})


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
    """Feed it a run's events; it answers the node's text pieces. `ended` is true after
    an event that ended the node; the caller checks it is the node's last (a retry of
    the run requeues it: then `resume()`)."""

    def __init__(self, node_key: str) -> None:
        self.node_key = node_key
        self.attempt: int | None = None  # of the pieces yielded so far
        self.yielded = False
        self.restart = False  # the next piece starts a new attempt
        self.ended = False

    def feed(self, event: Event) -> TextPiece | None:
        if event.node_key != self.node_key:
            return None
        if isinstance(event, RunEvent):
            if event.type in NODE_STARTS:  # a new attempt (a retried run starts at 1 again)
                self.restart = self.yielded
            self.ended = event.type in NODE_ENDS
            return None
        if not isinstance(event, StreamEvent) or event.type != "node_stream":
            return None
        data = event.data if isinstance(event.data, dict) else {}
        attempt, text = data.get("attempt"), data.get("text")
        if not isinstance(attempt, int) or not isinstance(text, str) or not text:
            return None
        reset = self.restart or (self.attempt is not None and attempt != self.attempt)
        self.attempt, self.restart, self.yielded = attempt, False, True
        return TextPiece(text, attempt=attempt, reset=reset)

    def resume(self) -> None:
        """The end seen was not the node's last: it runs again."""
        self.ended = False


def runs_again(node_key: str, later: list[RunEvent]) -> bool:
    """Whether events after a node's end show it running again (the run was retried)."""
    return any(e.node_key == node_key or (e.node_key is None and e.type == "run_queued")
               for e in later)
