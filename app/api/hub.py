"""Fan-out of run events to SSE streams: one LISTEN dagq_events connection per API process.

A notification only wakes the streams of the runs it names (payload: comma-separated
run ids, or `*` for all); the streams then read the event rows themselves. A lost
notification or connection costs latency only: streams also re-read every `poll_s`
without one: 5 s (dagq.api.routes.events.POLL_S), or 0.5 s with no LISTEN at all
(DAGQ_LISTEN=off, for a transaction pooler without a direct URL: url None).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterator

import psycopg

from dagq.runtime.failover import reconnect_delays
from dagq.runtime.sqlfiles import queries
from dagq.store.tx import EVENTS_CHANNEL

log = logging.getLogger("dagq.api.hub")


# How often an event stream re-reads when nothing is listened to (DAGQ_LISTEN=off).
POLL_WITHOUT_LISTEN_S = 0.5


class EventHub:
    def __init__(self, url: str | None, *, poll_s: float = 5.0) -> None:
        """`url`: the LISTEN connection's (None: none, streams poll every
        POLL_WITHOUT_LISTEN_S instead of `poll_s`)."""
        self.url = url
        self.poll_s = poll_s if url is not None else min(poll_s, POLL_WITHOUT_LISTEN_S)
        self._subscribers: dict[uuid.UUID, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        self._stopping = False
        # True only while the task waits in notifies() or in its retry sleep: the
        # points where a cancel is safe. Cancelled while connecting or while LISTEN is
        # in flight, psycopg (seen with 3.2.4) can go on waiting for a reply that
        # already came, and stop() would hang: there the task checks _stopping itself.
        self._cancellable = False

    async def start(self) -> None:
        if self.url is None:
            return
        self._task = asyncio.create_task(self._run(), name="dagq-event-hub")

    async def stop(self, timeout_s: float = 10.0) -> None:
        task, self._task = self._task, None
        self._stopping = True
        if task is not None:
            if self._cancellable:
                task.cancel()
            # Otherwise it is connecting or sending LISTEN and returns once that is
            # done (bounded by connect_timeout and the session's statement timeout).
            done, _ = await asyncio.wait({task}, timeout=timeout_s)
            if not done:
                log.warning("the LISTEN task did not stop within %.0fs; leaving it", timeout_s)
            elif not task.cancelled() and task.exception() is not None:
                log.warning("the LISTEN task ended with %r", task.exception())
        self._wake_all()

    @contextlib.contextmanager
    def subscribe(self, run_id: uuid.UUID) -> Iterator[asyncio.Event]:
        """An event set whenever the run may have new events (clear it before reading)."""
        wake = asyncio.Event()
        self._subscribers[run_id].add(wake)
        try:
            yield wake
        finally:
            waiting = self._subscribers.get(run_id)
            if waiting is not None:
                waiting.discard(wake)
                if not waiting:
                    del self._subscribers[run_id]

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    def dispatch(self, payload: str) -> None:
        if payload == "*" or not payload:
            self._wake_all()
            return
        for part in payload.split(","):
            try:
                run_id = uuid.UUID(part)
            except ValueError:
                continue
            for wake in self._subscribers.get(run_id, ()):
                wake.set()

    def _wake_all(self) -> None:
        for waiting in self._subscribers.values():
            for wake in waiting:
                wake.set()

    async def _run(self) -> None:
        delays = reconnect_delays()  # jittered: API processes do not reconnect in step
        while not self._stopping and self.url is not None:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True
                ) as conn:
                    await conn.execute(queries()["listen_events"])
                    if self._stopping:
                        return
                    self.listening.set()
                    delays = reconnect_delays()
                    self._wake_all()  # whatever happened while we were not listening
                    self._cancellable = True
                    try:
                        async for note in conn.notifies():
                            self.dispatch(note.payload)
                    finally:
                        self._cancellable = False
            except psycopg.Error as exc:
                self.listening.clear()
                if self._stopping:
                    return
                delay = next(delays)
                log.warning("LISTEN %s lost (%s); reconnecting in %.1fs", EVENTS_CHANNEL,
                            exc, delay)
                self._cancellable = True
                try:
                    await asyncio.sleep(delay)
                finally:
                    self._cancellable = False
