"""The connection budget: how many server connections dagq's processes hold at most,
from the pool-size settings (docs/operations.md has the arithmetic for N hosts).

Each process's pool grows to its size under load and shrinks back when idle; LISTEN
takes one more, long-lived connection per API, worker and sweeper process (the
sweeper's webhook deliverer; to DAGQ_LISTEN_URL,
none with DAGQ_LISTEN=off). Behind a transaction pooler, the pools' connections are
client connections of the pooler (its default_pool_size bounds the server side), while
the LISTEN connections reach Postgres directly.
"""

from __future__ import annotations

import dataclasses

from dagq.config import Settings

# A worker process's pool beyond its threads: the supervisor's heartbeats, the
# completions committer, the stream writer and the notifier work beside the threads.
WORKER_POOL_EXTRA = 4


def worker_pool_size(settings: Settings, threads: int) -> int:
    """DAGQ_WORKER_POOL_SIZE, or (0) the worker's threads + WORKER_POOL_EXTRA."""
    return settings.worker_pool_size or threads + WORKER_POOL_EXTRA


@dataclasses.dataclass(frozen=True)
class Budget:
    """Connections at most: `pooled` through DAGQ_DATABASE_URL, `listen` for LISTEN."""

    api: int = 0  # processes of each kind
    workers: int = 0
    sweepers: int = 0
    threads: int = 0  # per worker process
    listening: bool = True  # False: LISTEN would never fire, so the processes poll

    def pooled(self, settings: Settings) -> int:
        return (self.api * settings.pool_size
                + self.workers * worker_pool_size(settings, self.threads)
                + self.sweepers * settings.sweeper_pool_size)

    def listen(self, settings: Settings) -> int:
        if settings.listen == "off" or not self.listening:
            return 0
        return self.api + self.workers + self.sweepers

    def line(self, settings: Settings) -> str:
        """One line: the total, what it is made of, and where the LISTEN ones go."""
        parts = []
        if self.api:
            parts.append(f"{self.api} API x {settings.pool_size}")
        if self.workers:
            parts.append(f"{self.workers} worker(s) x "
                         f"{worker_pool_size(settings, self.threads)}")
        if self.sweepers:
            parts.append(f"{self.sweepers} sweeper x {settings.sweeper_pool_size}")
        pooled, listen = self.pooled(settings), self.listen(settings)
        where = "DAGQ_LISTEN_URL" if settings.listen_url else "the database URL"
        tail = (f" + {listen} LISTEN (1 per API/worker/sweeper process, to {where})"
                if listen
                else " (DAGQ_LISTEN=off: no LISTEN connections)" if settings.listen == "off"
                else " (no LISTEN connections: they would never fire)")
        return (f"connections: at most {pooled + listen} to the server: {pooled} pooled "
                f"({', '.join(parts)}){tail}")
