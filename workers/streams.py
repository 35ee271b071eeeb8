"""The worker's stream writer: executors' `node.stream(...)` calls buffered, and written
for every node of this process in one statement at most FLUSH_S after the first chunk
of a batch was buffered (sooner once FLUSH_BYTES are waiting); idle, it sleeps.

Threads: executor threads (and threads they start) call `append`; the writer thread
flushes; a worker thread calls `finish` when its node's executor returned, which writes
that node's remaining chunks before its outcome is recorded (so a node's chunks always
precede its end in the run's feed). `_lock` guards the buffer, the per-attempt counters
and the finished attempts; `_write_lock` serialises writes, so chunks go out in the
order appended.

Bounds: an attempt's own bytes are counted here (MAX_ATTEMPT_BYTES: the `stream()` call
over it raises StreamTooLarge). A run's and a tenant's stored bytes are counted by
Postgres (DAGQ_MAX_STREAM_BYTES_PER_RUN / _PER_TENANT, migration 023): a flush that would
pass one is refused there, and the attempt's next `stream()` raises StreamTooLarge.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from dagq.config import Settings, get_settings
from dagq.errors import DagqError
from dagq.jsonsafe import unstorable
from dagq.store import Store
from dagq.store.streams import StreamCaps, StreamChunk

log = logging.getLogger("dagq.streams")

FLUSH_S = 0.015
FLUSH_BYTES = 4096
# One attempt's streamed bytes beyond this are refused (StreamTooLarge in the executor).
MAX_ATTEMPT_BYTES = 16 * 1024 * 1024
STOP_TIMEOUT_S = 5.0
# Chunks buffered while the database does not answer, at most; later ones are dropped
# (and logged) until a flush gets through.
MAX_BUFFERED_CHUNKS = 100_000
FINISHED_KEPT = 4096  # attempts remembered as finished (their late chunks are refused)

LeaseKey = tuple[int, int]  # (node id, lease version)


class StreamTooLarge(ValueError):
    """An attempt streamed more than MAX_ATTEMPT_BYTES, or its run or tenant holds as
    much streamed output as its cap allows."""


# Why a flush's chunks were refused (the cap dagq.append_stream names), for the executor.
CAP_SETTINGS = {"run": "DAGQ_MAX_STREAM_BYTES_PER_RUN",
                "tenant": "DAGQ_MAX_STREAM_BYTES_PER_TENANT"}


def caps_of(settings: Settings) -> StreamCaps:
    """The bounds of DAGQ_MAX_STREAM_BYTES_PER_RUN / _PER_TENANT (0: none) and
    DAGQ_STREAM_TAIL_BYTES."""
    return StreamCaps(run_bytes=settings.max_stream_bytes_per_run or None,
                      tenant_bytes=settings.max_stream_bytes_per_tenant or None,
                      tail_bytes=settings.stream_tail_bytes)


class StreamClosed(RuntimeError):
    """The attempt's executor has returned: nothing more can be streamed for it."""


def chunk_size(text: str | None, data: dict[str, Any] | None) -> int:
    """Check a chunk can be stored (ValueError naming why, at the caller) and size it."""
    if text is None and data is None:
        raise ValueError("stream() needs text or data")
    if text is not None and not isinstance(text, str):
        raise ValueError(f"stream text must be a str, not {type(text).__name__}")
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"stream data must be a JSON object, not {type(data).__name__}")
    if (problem := unstorable({"text": text, "data": data}, "chunk")) is not None:
        raise ValueError(f"stream chunk cannot be stored: {problem}")
    try:
        data_bytes = len(json.dumps(data, allow_nan=False)) if data is not None else 0
    except (TypeError, ValueError) as exc:
        raise ValueError(f"stream data is not JSON: {exc}") from None
    return (len(text.encode()) if text else 0) + data_bytes


class StreamWriter(threading.Thread):
    def __init__(self, repo: Store, *, flush_s: float = FLUSH_S,
                 flush_bytes: int = FLUSH_BYTES, caps: StreamCaps | None = None) -> None:
        super().__init__(name="dagq-streams", daemon=True)
        self.repo = repo
        self.caps = caps if caps is not None else caps_of(get_settings())
        self.flush_s = flush_s
        self.flush_bytes = flush_bytes
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._buffer: list[StreamChunk] = []
        self._buffered_bytes = 0
        self._attempts: dict[LeaseKey, list[int]] = {}  # key -> [last seq, bytes]
        self._finished: dict[LeaseKey, None] = {}  # insertion-ordered, FINISHED_KEPT long
        self._refused: dict[LeaseKey, str] = {}  # attempts a cap refused: why (until finish)
        self._wake = threading.Event()  # something is buffered
        self._full = threading.Event()  # FLUSH_BYTES are buffered: flush now
        self._stopping = threading.Event()
        self.written = self.dropped = 0

    def append(self, key: LeaseKey, run_id: uuid.UUID, text: str | None = None,
               data: dict[str, Any] | None = None) -> None:
        size = chunk_size(text, data)
        with self._lock:
            if key in self._finished:
                raise StreamClosed("this attempt has ended (its executor returned): a "
                                   "thread it started streamed too late")
            if (refused := self._refused.get(key)) is not None:
                raise StreamTooLarge(refused)
            counters = self._attempts.setdefault(key, [0, 0])
            if counters[1] + size > MAX_ATTEMPT_BYTES:
                raise StreamTooLarge(
                    f"this attempt streamed more than {MAX_ATTEMPT_BYTES} bytes")
            if len(self._buffer) >= MAX_BUFFERED_CHUNKS:
                self.dropped += 1
                if self.dropped % 10_000 == 1:
                    log.warning("stream buffer full (the database is not answering): "
                                "chunks dropped so far: %d", self.dropped)
                return
            counters[0] += 1
            counters[1] += size
            self._buffer.append(StreamChunk(key[0], key[1], run_id, counters[0], text, data))
            self._buffered_bytes += size
            full = self._buffered_bytes >= self.flush_bytes
        if not self.is_alive():  # not started (tools, tests): write it now
            self.flush()
            return
        self._wake.set()
        if full:
            self._full.set()

    def finish(self, key: LeaseKey) -> None:
        """The attempt's executor returned: its chunks are written (those buffered and
        any write in flight) before this returns; its counters are forgotten."""
        with self._lock:
            streamed = self._attempts.pop(key, None) is not None
            self._refused.pop(key, None)
            self._finished[key] = None
            while len(self._finished) > FINISHED_KEPT:
                del self._finished[next(iter(self._finished))]
        if streamed:
            self.flush()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No write in flight or begun meanwhile. A stopping worker releases its attempts
        under it: the release deletes their chunks, and a flush committing beside it
        could insert rows its DELETE does not see, which the next run of the same
        attempt number would then collide with. Chunks buffered now are written after
        and refused, since the release moved each node's version on."""
        with self._write_lock:
            yield

    def flush(self) -> None:
        """Write everything buffered, in one transaction."""
        with self._write_lock:
            with self._lock:
                batch, self._buffer, self._buffered_bytes = self._buffer, [], 0
            if not batch:
                return
            try:
                result = self.repo.streams.write_stream(batch, self.caps)
            except (DagqError, OSError) as exc:  # the database stayed unavailable
                log.warning("lost %d streamed chunk(s): %s", len(batch), exc)
                self.dropped += len(batch)
                return
            self.written += result.written
            self.dropped += len(batch) - result.written
            if result.refused:
                self._note_refused(result.refused)

    def _note_refused(self, refused: dict[LeaseKey, str]) -> None:
        """Attempts whose chunks a cap refused: their next stream() raises, naming it."""
        with self._lock:
            for key, cap in refused.items():
                if key in self._finished:  # its executor has returned: nobody to tell
                    continue
                setting = CAP_SETTINGS.get(cap, "a stream cap")
                limit = self.caps.run_bytes if cap == "run" else self.caps.tenant_bytes
                self._refused[key] = (
                    f"this {cap} already stores as much streamed output as {setting} "
                    f"allows ({limit} bytes): chunks were refused")

    def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait()  # idle until a chunk is buffered (or the stop)
            self._full.wait(self.flush_s)  # gather for up to FLUSH_S
            self._wake.clear()
            self._full.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the writer thread must never die
                log.exception("stream flush failed")
        self.flush()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        self._stopping.set()
        self._wake.set()
        self._full.set()
        if self.is_alive():
            self.join(timeout)
