"""Notifications sent after commit by a thread of their own, so the caller's call costs
one round trip (its statement) instead of two (its statement, then the NOTIFY).

A store given a `BackgroundNotifier` (Store.notifying_in_background) hands each
committed transaction's notifications to it and returns; the thread sends what piled up
in one `notify` statement on a pooled connection, deduplicated, right away. Still after
the commit (a NOTIFY inside a durable transaction would serialise commits: see
dagq.store.tx), and still best effort: a notification lost (the process exits before
the thread sent it) costs latency only, consumers poll at least once a second.
"""

from __future__ import annotations

import logging
import threading

from psycopg_pool import ConnectionPool

from dagq.runtime.sqlfiles import queries

log = logging.getLogger("dagq.store")

Note = tuple[str, str]  # (channel, payload)


class BackgroundNotifier:
    def __init__(self, pool: ConnectionPool, name: str = "dagq-notifier") -> None:
        self.pool = pool
        self._lock = threading.Condition()
        self._pending: list[Note] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def post(self, notes: list[Note]) -> None:
        with self._lock:
            stopped = self._stopping
            if not stopped and not self._started:
                self._started = True
                self._thread.start()
            if not stopped:
                self._pending.extend(notes)
                self._lock.notify()
        if stopped:  # after stop(): sent by the caller, as a store without a notifier does
            self._send(list(dict.fromkeys(notes)))

    def stop(self, timeout: float = 2.0) -> None:
        """Send what is pending, then end the thread."""
        with self._lock:
            self._stopping = True
            self._lock.notify()
            started = self._started
        if started:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._lock.wait(1.0)
                notes, self._pending = list(dict.fromkeys(self._pending)), []
                stopping = self._stopping
            if notes:
                self._send(notes)
            if stopping and not notes:
                return

    def _send(self, notes: list[Note]) -> None:
        try:
            with self.pool.connection(timeout=5.0) as conn:
                conn.execute(queries()["notify"], {"channels": [c for c, _ in notes],
                                                   "payloads": [p for _, p in notes]})
        except Exception as exc:  # noqa: BLE001 - best effort: never raise, never retry
            log.info("notification lost after commit (%s); listeners will poll", exc)

