"""`dagq run follow RUN_ID`: a run's events as lines and its nodes' streamed text as it
comes, until the run ends. The items come from the backend (the database's feed, or the
API's event stream with DAGQ_URL); printing them is written once, here."""

from __future__ import annotations

import dataclasses
import json
import sys
import uuid
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from dagq.cli.backend import Backend


@dataclasses.dataclass(frozen=True)
class Chunk:
    """A piece of a node attempt's streamed text and/or data."""

    node_key: str
    attempt: int
    text: str | None
    data: dict[str, Any] | None


@dataclasses.dataclass(frozen=True)
class Event:
    """A stored run or node event."""

    type: str
    node_key: str | None
    attempt: int | None
    data: Any


FeedItem = Chunk | Event


class FeedPrinter:
    """Events one per line; consecutive text chunks of one node attempt run on, as the
    text they are; a new attempt's text starts on a line of its own, marked."""

    def __init__(self, out: TextIO | None = None) -> None:
        # sys.stdout as it is now, not at import (a test's capture replaces it)
        self.out = out if out is not None else sys.stdout
        self._open: tuple[str, int] | None = None  # the attempt whose text runs on
        self._attempts: dict[str, int] = {}  # per node: the attempt of its text so far

    def show(self, item: FeedItem) -> None:
        if isinstance(item, Chunk):
            self.chunk(item.node_key, item.attempt, item.text, item.data)
        else:
            self.event(item.type, item.node_key, item.attempt, item.data)

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


def follow(backend: Backend, run_id: uuid.UUID, printer: FeedPrinter) -> str:
    """Print the run's feed until it ends; returns the run's status then."""
    for item in backend.feed(run_id):
        printer.show(item)
    return backend.run(run_id).status
