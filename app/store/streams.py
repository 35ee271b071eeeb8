"""Streamed node output: chunks appended in batches (fenced on each attempt's lease),
a run's events and chunks read as one resumable feed, one attempt's text read whole."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from dagq.errors import NotFound
from dagq.runtime.sqlfiles import queries
from dagq.states import TERMINAL_NODE_STATUSES
from dagq.store.tx import Database, notify_event_streams, transient


@dataclass(frozen=True)
class StreamChunk:
    """One piece of an attempt's streamed output, as its worker buffered it."""

    node_id: int
    version: int  # the lease's version: the fence
    run_id: uuid.UUID
    seq: int  # 1, 2, ... within the attempt
    text: str | None = None
    data: dict[str, Any] | None = None


@dataclass(frozen=True)
class StreamCaps:
    """The bounds a flush is written under (None: none). `run_bytes`, `tenant_bytes`:
    the stored bytes a run and a tenant may hold; `tail_bytes`: what each earlier attempt
    of a node keeps once a newer attempt streams (DAGQ_STREAM_TAIL_BYTES)."""

    run_bytes: int | None = None
    tenant_bytes: int | None = None
    tail_bytes: int | None = None


@dataclass(frozen=True)
class StreamWrite:
    """What a flush did: chunks written, and the attempts whose chunks a cap refused
    ((node id, lease version) -> "run" or "tenant")."""

    written: int
    refused: dict[tuple[int, int], str]


@dataclass(frozen=True)
class FeedCursor:
    """Where a reader of a run's feed is: after event `event` and after chunk `chunk`.
    Written `E.C` (the SSE id), or `E` while no chunk has been read: the ids of a run
    that streams nothing are its event ids, as they always were."""

    event: int = 0
    chunk: int = 0

    def __str__(self) -> str:
        return f"{self.event}.{self.chunk}" if self.chunk else str(self.event)

    @classmethod
    def parse(cls, text: str) -> FeedCursor:
        """'E' or 'E.C' (validated by the caller's pattern)."""
        event, _, chunk = text.partition(".")
        return cls(int(event or 0), int(chunk or 0))


@dataclass(frozen=True)
class Feed:
    """One read of a run's feed: its items in order, whether a page limit cut the read
    (read again at once), and the run's status then (None: the run is gone)."""

    items: list[FeedItem]
    cut: bool
    run_status: str | None


@dataclass(frozen=True)
class FeedItem:
    """A run event or a streamed chunk, with the cursor just after it."""

    kind: str  # "event" or "chunk"
    row: dict[str, Any]
    cursor: FeedCursor


class StreamRepo:
    """Appending and reading streamed output."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def append_stream(self, chunks: list[StreamChunk], caps: StreamCaps | None = None) -> int:
        """Write a batch of chunks; how many were written (see write_stream)."""
        return self.write_stream(chunks, caps or StreamCaps()).written

    @transient
    def write_stream(self, chunks: list[StreamChunk], caps: StreamCaps) -> StreamWrite:
        """Write a batch of chunks (any nodes, any runs) in one statement; those whose
        attempt lost its lease are dropped and counted (`stale_stream_chunks` in
        dagq.counters), those over a cap of `caps` refused (`refused_stream_chunks`)."""
        if not chunks:
            return StreamWrite(0, {})
        with self.db.tx(one_statement=True) as cur:
            row = cur.execute(queries()["append_stream"], {"chunks": Jsonb([
                {"ord": i, "node_id": c.node_id, "version": c.version, "run_id": str(c.run_id),
                 "seq": c.seq, "text": c.text, "data": c.data}
                for i, c in enumerate(chunks)]), "run_cap": caps.run_bytes,
                "tenant_cap": caps.tenant_bytes, "tail": caps.tail_bytes}).fetchone()
            if row["runs"]:
                notify_event_streams(row["runs"])
        refused = {(r["node_id"], r["version"]): r["cap"] for r in row["refused"]}
        return StreamWrite(row["written"], refused)

    @transient
    def run_feed(self, run_id: uuid.UUID, after: FeedCursor, *, limit: int,
                 chunks: bool = True, since: datetime | None = None) -> Feed:
        """The run's events and (with `chunks`) streamed chunks after `after`, merged in
        time order, each kind in id order, with the run's status, in one statement.
        `since`: the run's created_at if known (the read then skips the day partitions
        of dagq.run_events before it from the start; it must not be later)."""
        with self.db.tx(one_statement=True) as cur:
            rows = cur.execute(queries()["run_feed"], {
                "run_id": run_id, "after_event": after.event, "after_chunk": after.chunk,
                "limit": limit, "with_chunks": chunks, "since": since}).fetchall()
        events = [r for r in rows if r["kind"] == "event"]
        pieces = [r for r in rows if r["kind"] == "chunk"]
        status = next((r["type"] for r in rows if r["kind"] == "run"), None)
        items, cut = _merge(events, pieces, after, limit)
        return Feed(items, cut, status)

    @transient
    def node_stream(self, run_id: uuid.UUID, node_key: str, attempt: int | None,
                    tenant: str | None) -> dict[str, Any]:
        """One attempt's streamed output so far (the latest attempt unless `attempt`):
        {attempt, text, data, chunks, complete}."""
        q = queries()
        with self.db.tx() as cur:
            run = cur.execute(q["get_run"], {"run_id": run_id}).fetchone()
            if run is None or (tenant is not None and run["tenant"] != tenant):
                raise NotFound(f"run {run_id} not found")
            node = cur.execute(q["node_for_stream"], {
                "run_id": run_id, "node_key": node_key}).fetchone()
            if node is None:
                raise NotFound(f"run {run_id} has no node {node_key!r}")
            wanted = node["attempts"] if attempt is None else attempt
            if wanted > node["attempts"]:
                raise NotFound(f"node {node_key!r} of run {run_id} has not started attempt "
                               f"{wanted} (it is at attempt {node['attempts']})")
            rows = cur.execute(q["node_stream_chunks"], {
                "run_id": run_id, "node_key": node_key, "attempt": wanted}).fetchall()
        live = node["status"] == "running" and wanted == node["attempts"]
        unstarted = node["attempts"] == 0 and node["status"] not in TERMINAL_NODE_STATUSES
        complete = not live and not unstarted  # (its last chunks precede its outcome)
        return {"attempt": wanted, "text": "".join(r["text"] or "" for r in rows),
                "data": [r["data"] for r in rows if r["data"] is not None],
                "chunks": len(rows), "complete": complete}


def _merge(events: list[dict[str, Any]], chunks: list[dict[str, Any]], start: FeedCursor,
           limit: int) -> tuple[list[FeedItem], bool]:
    """Interleave by time, keeping each kind in id order. A kind cut by the page limit
    stops the merge where it runs out, so nothing after its unread rows goes first."""
    items: list[FeedItem] = []
    event_at, chunk_at = start.event, start.chunk
    i = j = 0
    cut_events, cut_chunks = len(events) >= limit, len(chunks) >= limit
    while i < len(events) or j < len(chunks):
        if i == len(events) and cut_events or j == len(chunks) and cut_chunks:
            break
        take_event = j == len(chunks) or (
            i < len(events) and events[i]["created_at"] <= chunks[j]["created_at"])
        if take_event:
            row, i = events[i], i + 1
            event_at = row["id"]
        else:
            row, j = chunks[j], j + 1
            chunk_at = row["id"]
        items.append(FeedItem("event" if take_event else "chunk", row,
                              FeedCursor(event_at, chunk_at)))
    return items, cut_events or cut_chunks
