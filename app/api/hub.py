"""Fan-out of run events to SSE streams: one LISTEN dagq_events connection per API process.

A notification only wakes the streams of the runs it names (payload: comma-separated
run ids, or `*` for all); the streams then read the event rows themselves. A lost
notification or connection costs latency only: streams also re-read every
`dagq.api.routes.events.POLL_S` (5 s) without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterator

import psycopg

from dagq.runtime.sqlfiles import queries
from dagq.store.tx import EVENTS_CHANNEL

log = logging.getLogger("dagq.api.hub")


class EventHub:
    def __init__(self, url: str) -> None:
        self.url = url
        self._subscribers: dict[uuid.UUID, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dagq-event-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
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
        delay = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True
                ) as conn:
                    await conn.execute(queries()["listen_events"])
                    self.listening.set()
                    delay = 0.1
                    self._wake_all()  # whatever happened while we were not listening
                    async for note in conn.notifies():
                        self.dispatch(note.payload)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("LISTEN %s lost (%s); reconnecting in %.1fs", EVENTS_CHANNEL,
                            exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
