"""Per worker process: heartbeat every lease in one statement, enforce timeouts, and
interrupt nodes whose run has stopped or whose lease was taken back; now and then, warn
(once per actor name) of messages queued for an actor no live worker serves.

A cancel notification (workers/listener.py) for a run one of whose nodes this worker
holds brings the next heartbeat forward to the next tick: the heartbeat reads the runs'
status, so a node is only ever stopped for what Postgres says."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING

from dagq.errors import DagqError
from dagq.workers.errors import NodeCancelled, NodeTimeout
from dagq.workers.leases import LeaseBook, node_ids, of_nodes
from dagq.workers.log_lines import node_fields

if TYPE_CHECKING:
    from dagq.workers.broker import PostgresBroker

log = logging.getLogger("dagq.supervisor")

TICK_S = 0.05
UNSERVED_CHECK_S = 30.0  # how often to look for messages no live worker serves


class Supervisor(threading.Thread):
    def __init__(self, broker: PostgresBroker, book: LeaseBook, *,
                 heartbeat_s: float) -> None:
        super().__init__(name="dagq-supervisor", daemon=True)
        self.broker = broker  # its store, worker id and lease TTL
        self.book = book
        self.heartbeat_s = heartbeat_s
        # (not `_stop`: threading.Thread has a method of that name, which fork calls)
        self._stopping = threading.Event()
        self._next_beat = 0.0
        # First look once this worker's own heartbeats count it as serving.
        self._next_unserved = time.monotonic() + 3 * heartbeat_s
        self.warned: set[str] = set()  # actor names already warned about
        # Set (from the listener's thread) when a run of a held node was cancelled; a
        # plain attribute read each tick: notifications in between make one heartbeat.
        self._beat_now = False

    def stop(self) -> None:
        self._stopping.set()

    def runs_cancelled(self, run_ids: frozenset[uuid.UUID] | None) -> None:
        """Runs were cancelled (None: maybe any): heartbeat at the next tick if this
        worker holds one of their nodes."""
        if self.book.holds_runs(run_ids):
            self._beat_now = True

    def run(self) -> None:
        while not self._stopping.wait(TICK_S):
            now = time.monotonic()
            for key in self.book.overdue(now):
                lease = self.book.get(key)
                if lease is not None:  # named as the line the attempt's failure writes
                    log.info("node %r of run %s: attempt %d ran past its timeout; "
                             "interrupting it", lease.node.node_key, lease.node.run_id,
                             lease.node.attempts, extra=node_fields(lease.node))
                self.book.interrupt(key, NodeTimeout)
            if now >= self._next_beat or self._beat_now:
                self._beat_now = False
                self._next_beat = now + self.heartbeat_s
                self.beat()
            if now >= self._next_unserved:
                self._next_unserved = now + UNSERVED_CHECK_S
                self.check_unserved()

    def beat(self) -> None:
        book = self.book
        held = book.keys()
        try:
            result = self.broker.repo.leases.heartbeat(worker=self.broker.worker_id,
                                                       node_ids=node_ids(held),
                                                       ttl_s=self.broker.lease_ttl_s)
        except DagqError as exc:
            log.warning("heartbeat failed: %s", exc)
            return
        # The answer is by node id, and speaks only for the attempts held when it was
        # asked: every one of those of a node reported gone is lost, of one told to stop
        # must stop. An attempt leased meanwhile (its node was taken back and leased
        # again by this worker while the heartbeat ran) is the next heartbeat's to judge.
        lost = book.mark_lost_keys(of_nodes(held, result.lost))
        if lost:
            log.warning("%d lease(s) were taken back by the sweeper; stopping them", len(lost))
        for key in lost | of_nodes(held, result.stop):
            book.interrupt(key, NodeCancelled)

    def check_unserved(self) -> list[str]:
        """Warn of the actors (each name once per process) whose messages wait in this
        worker's queues while no live worker serves them; returns the names warned of."""
        broker = self.broker
        try:
            rows = broker.repo.messages.unserved_actors(queues=sorted(broker.queues),
                                                        served=list(broker.served))
        except DagqError as exc:
            log.debug("could not look for unserved actors: %s", exc)
            return []
        warned = []
        for row in rows:
            if row["actor"] in self.warned:
                continue
            self.warned.add(row["actor"])
            warned.append(row["actor"])
            log.warning(
                "%d message(s) on queue %r are for actor %r, which no worker serves (due "
                "since %s); the sweeper dead-letters each once it has waited "
                "DAGQ_DEAD_LETTER_AFTER_S", row["waiting"], row["queue"], row["actor"],
                row["since"].isoformat(timespec="seconds"))
        return warned
