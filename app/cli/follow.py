"""`dagq run follow RUN_ID`: a run's events as lines and its nodes' streamed text as it
comes, until the run ends; from the database, or through the API with DAGQ_URL."""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any, TextIO

from dagq.states import TERMINAL_RUN_EVENTS

POLL_S = 0.1
PAGE = 500


class FeedPrinter:
    """Events one per line; consecutive text chunks of one node attempt run on, as the
    text they are; a new attempt's text starts on a line of its own, marked."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self._open: tuple[str, int] | None = None  # the attempt whose text runs on
        self._attempts: dict[str, int] = {}  # per node: the attempt of its text so far

    def event(self, type_: str, node_key: str | None, attempt: int | None,
              data: dict[str, Any]) -> None:
        self._end_text()
        where = f" {node_key}" if node_key else ""
        tries = f" (try {attempt})" if attempt else ""
        error = data.get("error") if isinstance(data, dict) else None
        detail = f": {error.get('message')}" if isinstance(error, dict) else ""
        self.out.write(f"{type_}{where}{tries}{detail}\n")
        self.out.flush()

    def chunk(self, node_key: str, attempt: int, text: str | None,
              data: dict[str, Any] | None) -> None:
        if data is not None:
            self._end_text()
            self.out.write(f"[{node_key}] {json.dumps(data, separators=(',', ':'))}\n")
        if text:
            if self._open != (node_key, attempt):
                self._end_text()
                earlier = self._attempts.get(node_key)
                restart = f" (attempt {attempt}: earlier text void)" \
                    if earlier is not None and earlier != attempt else ""
                self.out.write(f"[{node_key}]{restart} ")
                self._open = (node_key, attempt)
            self._attempts[node_key] = attempt
            self.out.write(text)
        self.out.flush()

    def _end_text(self) -> None:
        if self._open is not None:
            self.out.write("\n")
            self._open = None


def follow_database(repo: Any, run_id: uuid.UUID, printer: FeedPrinter) -> str:
    """Poll the run's feed until its terminal event; returns the run's status."""
    from dagq.store.streams import FeedCursor

    cursor = FeedCursor()
    repo.runs.get_run(run_id, with_nodes=False)  # NotFound first
    ended = None  # the latest run-level event, if terminal (a retry's run_queued reopens)
    while True:
        feed = repo.streams.run_feed(run_id, cursor, limit=PAGE)
        items, cut = feed.items, feed.cut
        for item in items:
            row = item.row
            if item.kind == "chunk":
                printer.chunk(row["node_key"], row["attempt"], row["text"], row["data"])
            else:
                printer.event(row["type"], row["node_key"], row["attempt"], row["data"])
                if row["node_key"] is None:
                    ended = row["type"] if row["type"] in TERMINAL_RUN_EVENTS else None
            cursor = item.cursor
        if ended and not cut:
            return ended.removeprefix("run_")
        if not cut:
            time.sleep(POLL_S)


def follow_client(client: Any, run_id: uuid.UUID, printer: FeedPrinter) -> str:
    """The same through the API's event stream."""
    from dagq.client import StreamEvent

    for event in client.events(run_id):
        if isinstance(event, StreamEvent):
            data = event.data if isinstance(event.data, dict) else {}
            if event.type == "node_stream" and event.node_key:
                printer.chunk(event.node_key, int(data.get("attempt") or 0),
                              data.get("text"), data.get("data"))
            continue
        printer.event(event.type, event.node_key, event.attempt, event.data)
    return client.run(run_id).status
