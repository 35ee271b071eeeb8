"""The sweeper's webhook deliverer: sends the outbox as it fills instead of once a second.

Three threads and a bounded pool:
- the listener LISTENs on dagq_webhooks (sent after the commit of every transaction that
  wrote an event a webhook may subscribe to: dagq.store.machine.unit) and wakes the
  claimer. With DAGQ_LISTEN=off (or a transaction pooler) there is none, and the
  claimer looks every DAGQ_WEBHOOK_POLL_S, as it also does when nothing wakes it (a
  retry coming due, a lost notification);
- the claimer claims due deliveries (SKIP LOCKED, several per statement) while fewer than
  2 x DAGQ_WEBHOOK_CONCURRENCY are claimed and unrecorded, and hands them to
- the senders: DAGQ_WEBHOOK_CONCURRENCY threads sharing one pool of guarded, kept-alive
  connections (dagq.runtime.keepalive_http), so consecutive deliveries to a receiver
  reuse a connection (and a slow receiver holds up one sender, not the others);
- the recorder writes the finished attempts, everything that finished meanwhile in one
  transaction (a commit per delivery would cap the rate at the server's flush rate).

Nothing here is needed for correctness: a claim is committed before its POST, and a
delivery claimed but not recorded (a SIGKILL, a stop, a database error) is due again
after CLAIM_S, with the same delivery id (at least once).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psycopg

from dagq.config import Settings
from dagq.errors import DagqError
from dagq.runtime.db import connect
from dagq.runtime.failover import reconnect_delays
from dagq.runtime.listening import listen_target
from dagq.runtime.sqlfiles import queries
from dagq.store import Store
from dagq.store.tx import WEBHOOKS_CHANNEL
from dagq.sweeper.webhooks import CLAIM_S, COUNTS, Outcome, finished, pool_for, send

log = logging.getLogger("dagq.sweeper")

STOP_S = 3.0  # what a stop waits for the threads (unrecorded claims come due again)
# After a wake-up, the claimer waits this long before it claims, so that deliveries
# written meanwhile go in the same claim: run ends arrive one transaction at a time, and
# a claim per delivery would cost more CPU than sending it. Latency: at most this.
GATHER_S = 0.01


class Deliverer:
    """`start()`, then `stop()`; `take_counts()` says what was delivered meanwhile."""

    def __init__(self, repo: Store, settings: Settings, url: str | None) -> None:
        """`url`: the database's, for the LISTEN connection (listen_target); None: poll."""
        self.repo = repo
        self.settings = settings
        self.concurrency = settings.webhook_concurrency
        self.most_claimed = 2 * self.concurrency
        self.connections = pool_for(settings, self.concurrency)
        self.senders = ThreadPoolExecutor(self.concurrency, "dagq-webhook")
        self.wake = threading.Event()
        self.listening = threading.Event()  # set while LISTEN is in place (tests wait)
        self._stopping = threading.Event()
        self._lock = threading.Condition()
        self._claimed = 0  # claimed and not yet recorded (or given up on)
        self._finished: list[tuple[dict[str, Any], Outcome]] = []
        self._counts: Counter[str] = Counter()
        self._listen_url = listen_target(url) if url is not None else None
        self._threads = [threading.Thread(target=self._claim_loop, name="dagq-webhook-claim",
                                          daemon=True),
                         threading.Thread(target=self._record_loop,
                                          name="dagq-webhook-record", daemon=True)]
        if self._listen_url is not None:
            self._threads.append(threading.Thread(target=self._listen_loop, daemon=True,
                                                  name="dagq-webhook-listen"))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = STOP_S) -> None:
        """Stop claiming, record what already finished, and end (within ~`timeout`):
        deliveries still in flight stay claimed and come due again."""
        self._stopping.set()
        self.wake.set()
        with self._lock:
            self._lock.notify_all()
        self.senders.shutdown(wait=False, cancel_futures=True)
        self.connections.close()  # cuts the sends in flight: their senders end now
        # The claimer and the recorder (the listener holds nothing: a daemon thread, its
        # connection ends with the process).
        for thread in self._threads[:2]:
            thread.join(timeout / 2)

    def take_counts(self) -> dict[str, int]:
        """Deliveries finished since the last call, by outcome (the sweeper logs them)."""
        with self._lock:
            counts, self._counts = dict(self._counts), Counter()
        return counts

    # ----- the claimer ------------------------------------------------------------------

    def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            room = self._room()
            if not room:
                return
            self.wake.clear()  # before the claim: a wake-up after it claims again
            try:
                claims = self.repo.webhooks.claim_deliveries(limit=room, claim_s=CLAIM_S)
            except DagqError as exc:
                log.warning("webhooks: cannot claim deliveries (%s); trying again in %.1fs",
                            exc, self.settings.webhook_poll_s)
                self._stopping.wait(self.settings.webhook_poll_s)
                continue
            with self._lock:
                self._claimed += len(claims)
            for claim in claims:
                try:
                    self.senders.submit(self._send, claim)
                except RuntimeError:  # stopping: the pool refuses; the claim comes due again
                    return
            if len(claims) < room and self.wake.wait(self.settings.webhook_poll_s):
                self._stopping.wait(GATHER_S)  # woken (not the poll): gather a few

    def _room(self) -> int:
        """Wait until at most `concurrency` deliveries are claimed and unrecorded, then
        how many more to claim (at least `concurrency`: claims stay several rows per
        statement); 0 when stopping."""
        with self._lock:
            while self._claimed > self.concurrency and not self._stopping.is_set():
                self._lock.wait(1.0)
            return 0 if self._stopping.is_set() else self.most_claimed - self._claimed

    # ----- the senders ------------------------------------------------------------------

    def _send(self, claim: dict[str, Any]) -> None:
        try:
            outcome = send(claim, self.connections)
        except Exception:  # a bug, not a receiver's doing: the claim comes due again
            log.exception("webhooks: delivery %s failed unexpectedly", claim["id"])
            self._release(1)
            return
        with self._lock:
            self._finished.append((claim, outcome))
            self._lock.notify_all()

    def _release(self, count: int) -> None:
        with self._lock:
            self._claimed -= count
            self._lock.notify_all()

    # ----- the recorder -----------------------------------------------------------------

    def _record_loop(self) -> None:
        while True:
            with self._lock:
                while not self._finished and not self._stopping.is_set():
                    self._lock.wait(1.0)
                gather = len(self._finished) < self.concurrency
            if gather and not self._stopping.is_set():
                # A transaction per attempt would cost more than the attempt: let the
                # sends in flight finish into this batch.
                self._stopping.wait(GATHER_S)
            with self._lock:
                batch, self._finished = self._finished, []
            if batch:
                self._record(batch)
            elif self._stopping.is_set():
                return

    def _record(self, batch: list[tuple[dict[str, Any], Outcome]]) -> None:
        try:
            # The database's clock times a retry (as the claims'); a batch of successes
            # schedules none, so it does not ask.
            at = (datetime.now(UTC) if all(outcome.ok for _, outcome in batch)
                  else self.repo.messages.database_now())
            done = [finished(claim, outcome, self.settings, at) for claim, outcome in batch]
            self.repo.webhooks.finish_attempts(done)
        except DagqError as exc:
            log.warning("webhooks: %d attempt(s) not recorded (%s); they come due again "
                        "in %.0fs", len(batch), exc, CLAIM_S)
        else:
            with self._lock:
                self._counts.update(COUNTS[attempt.status] for attempt in done)
        finally:
            self._release(len(batch))

    # ----- the listener -----------------------------------------------------------------

    def _listen_loop(self) -> None:
        assert self._listen_url is not None
        delays = reconnect_delays()
        while not self._stopping.is_set():
            try:
                with connect(self._listen_url, autocommit=True) as conn:
                    conn.execute(queries()["listen_webhooks"])
                    delays = reconnect_delays()
                    self.listening.set()
                    self.wake.set()  # anything written while we were away
                    while not self._stopping.is_set():
                        for _note in conn.notifies(timeout=1.0):
                            self.wake.set()
            except psycopg.Error as exc:
                self.listening.clear()
                if self._stopping.is_set():
                    return
                delay = next(delays)
                log.warning("LISTEN %s lost (%s); reconnecting in %.1fs", WEBHOOKS_CHANNEL,
                            exc, delay)
                self._stopping.wait(delay)
