"""Wake consumers when nodes are queued: LISTEN dagq_queued on a dedicated connection;
and tell the supervisor when runs are cancelled (dagq_cancelled), so their running nodes
stop at once.

A notification only saves latency: consumers also poll at most every second, and the
supervisor's heartbeat finds cancelled runs, so a lost notification (or a dropped
connection) never strands work. The connection goes to DAGQ_LISTEN_URL (a direct URL when
DAGQ_DATABASE_URL is a transaction pooler); with DAGQ_LISTEN=off there is none, and the
polling alone starts work (dagq.runtime.listening).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable

import psycopg

from dagq.runtime.db import connect
from dagq.runtime.failover import reconnect_delays
from dagq.runtime.listening import listen_target
from dagq.runtime.sqlfiles import queries
from dagq.store.tx import CANCELLED_CHANNEL, QUEUED_CHANNEL

log = logging.getLogger("dagq.listener")


class QueueListener(threading.Thread):
    def __init__(self, url: str) -> None:
        """`url`: the database's; the connection goes to listen_target(url)."""
        super().__init__(name="dagq-listener", daemon=True)
        self.url = listen_target(url)
        self._events: dict[str, threading.Event] = defaultdict(threading.Event)
        self._events_lock = threading.Lock()
        # (not `_stop`: threading.Thread has a method of that name, which fork calls)
        self._stopping = threading.Event()
        # Called with the cancelled runs' ids (None: any run may be) from this thread.
        self.on_cancel: Callable[[frozenset[uuid.UUID] | None], None] | None = None

    def event(self, queue: str) -> threading.Event:
        with self._events_lock:
            return self._events[queue]

    def _wake(self, queue: str | None) -> None:
        with self._events_lock:
            targets = list(self._events.values()) if queue is None else [self._events[queue]]
        for event in targets:
            event.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake(None)

    def run(self) -> None:
        if self.url is None:  # DAGQ_LISTEN=off: the consumers' polling starts the work
            return
        delays = reconnect_delays()  # jittered: workers do not reconnect in step
        while not self._stopping.is_set():
            try:
                # Bounded like every dagq session: keepalives notice a dead server.
                with connect(self.url, autocommit=True) as conn:
                    conn.execute(queries()["listen_queued"])
                    conn.execute(queries()["listen_cancelled"])
                    delays = reconnect_delays()
                    self._wake(None)  # anything queued while we were away
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._dispatch(note.channel, note.payload)
            except psycopg.Error as exc:
                if self._stopping.is_set():
                    return
                delay = next(delays)
                log.warning("LISTEN %s lost (%s); reconnecting in %.1fs", QUEUED_CHANNEL,
                            exc, delay)
                self._stopping.wait(delay)  # a stop ends the wait at once

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel != CANCELLED_CHANNEL:
            self._wake(payload or None)
        elif self.on_cancel is not None:
            self.on_cancel(cancelled_runs(payload))


def cancelled_runs(payload: str) -> frozenset[uuid.UUID] | None:
    """The run ids of a dagq_cancelled payload; None (any run) for `*` or a payload that
    does not parse (a check too many costs one heartbeat statement)."""
    try:
        return None if payload == "*" else frozenset(
            uuid.UUID(part) for part in payload.split(","))
    except ValueError:
        return None
