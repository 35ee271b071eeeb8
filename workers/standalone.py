"""What `dagq worker` runs beside its broker, for a PostgresBroker used on its own: under
the `dramatiq` CLI, or in a test with `dramatiq.Worker`.

`PostgresBroker(url=...)` (or with DAGQ_DATABASE_URL) opens its own pool, and when it
first consumes starts the same helpers dagq's worker process starts: LISTEN on
`dagq_queued` (consumers wait for a notification, polling at most once a second, never
busy), the supervisor (heartbeats, timeouts, interrupts of cancelled runs) and the
completion committer. `broker.close()` (the dramatiq CLI calls it) stops them.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING

from dagq.config import get_settings
from dagq.errors import DagqError
from dagq.runtime.db import SessionLimits, open_pool
from dagq.store import Store
from dagq.workers.listener import QueueListener
from dagq.workers.supervisor import Supervisor

if TYPE_CHECKING:
    from dagq.workers.broker import PostgresBroker

log = logging.getLogger("dagq.broker")

POOL_SIZE = 8


def own_store(url: str | None, *, owner: str = "PostgresBroker", name: str = "dramatiq-broker",
              size: int = POOL_SIZE, generic_plans: bool = True) -> tuple[Store, str]:
    """A store on its own pool, for `url` or DAGQ_DATABASE_URL (the broker's, and the
    result and rate limiter backends' when they are given no store)."""
    url = url or os.environ.get("DAGQ_DATABASE_URL")
    if not url:
        raise ValueError(f"{owner} needs a dagq Store, or url= (or DAGQ_DATABASE_URL)")
    return Store(open_pool(url, size=size, name=name, generic_plans=generic_plans,
                           limits=SessionLimits.for_workers())), url


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class SelfServing:
    """The listener, supervisor and committer of a broker dagq's worker does not run."""

    def __init__(self, broker: PostgresBroker, url: str) -> None:
        self.broker = broker
        self.listener = QueueListener(url)
        self.supervisor = Supervisor(broker, broker.book,
                                     heartbeat_s=get_settings().heartbeat_s)
        self.listener.on_cancel = self.supervisor.runs_cancelled
        self.started = False
        self.consumed: set[str] = set()  # the queues Dramatiq's worker consumes
        broker.on_actors_changed = self._register  # an actor declared once it consumes

    def serve(self, queue_name: str) -> None:
        """A queue Dramatiq's worker consumes (`--queues` picks them): this worker is
        listed again with every queue so far, then its helpers run."""
        if queue_name not in self.consumed:
            self.consumed.add(queue_name)
            self._register()
        self.start()

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        self.listener.start()
        self.broker.completions.start()
        self.supervisor.start()

    def stop(self) -> None:
        self.broker.on_actors_changed = None  # the row is about to say stopped: keep it so
        if not self.started:
            return
        self.broker.completions.stop()
        self.supervisor.stop()
        self.listener.stop()
        try:
            self.broker.repo.fleet.stop_worker(self.broker.worker_id)
        except DagqError as exc:  # the sweeper marks it dead after missed heartbeats
            log.warning("could not mark worker %s stopped: %s", self.broker.worker_id, exc)

    def _register(self) -> None:
        """List this worker (its queues, executors and actors) as `dagq worker` does: its
        heartbeats keep the row fresh, so its actors' messages count as served."""
        broker = self.broker
        try:
            broker.repo.fleet.register_worker(
                worker=broker.worker_id, hostname=socket.gethostname(), pid=os.getpid(),
                queues=sorted(self.consumed or broker.queues), threads=1,
                heartbeat_s=get_settings().heartbeat_s,
                executors=[d.info() for d in broker.executors.values()],
                actors=sorted(broker.actors))
        except DagqError as exc:
            log.warning("could not register worker %s: %s", broker.worker_id, exc)
