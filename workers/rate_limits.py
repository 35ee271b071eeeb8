"""`dagq.PostgresRateLimiterBackend`: Dramatiq's rate limiters and Barrier with only
Postgres, so `group(...).add_completion_callback` (GroupCallbacks) works across worker
processes and hosts.

    from dramatiq.middleware import GroupCallbacks
    from dagq import PostgresRateLimiterBackend

    broker.add_middleware(GroupCallbacks(PostgresRateLimiterBackend(url=DATABASE_URL)))

Counters are rows of `dagq.dramatiq_counters` (value, expiry from the TTL), changed by
single conditional upserts; `incr_and_sum` (the window limiter) takes one fleet-wide
advisory lock for its check. `wait_notify` sets an event counter (alive for its TTL, as
Redis' list is) and NOTIFYs `dagq_counters`; `wait` LISTENs, then checks the event.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dramatiq.rate_limits import RateLimiterBackend

from dagq.runtime.listening import listen_connection
from dagq.runtime.sqlfiles import queries
from dagq.store import Store

RECHECK_S = 1.0


class PostgresRateLimiterBackend(RateLimiterBackend):
    """Counters in Postgres; `url` (default: DAGQ_DATABASE_URL) or a dagq `store`."""

    def __init__(self, *, url: str | None = None, store: Store | None = None,
                 pool_size: int = 4) -> None:
        if store is None:
            from dagq.workers.standalone import own_store  # (its pool, as the broker's)

            store, url = own_store(url, owner="PostgresRateLimiterBackend",
                                   name="dramatiq-rate-limits", size=pool_size,
                                   generic_plans=False)
        self.url = url or store.db.pool.conninfo
        self.store = store

    def add(self, key: str, value: int, ttl: int) -> bool:
        return self.store.messages.counter_add(key, value, int(ttl))

    def incr(self, key: str, amount: int, maximum: int, ttl: int) -> bool:
        return self.store.messages.counter_change(key, amount, int(ttl), maximum=maximum)

    def decr(self, key: str, amount: int, minimum: int, ttl: int) -> bool:
        return self.store.messages.counter_change(key, -amount, int(ttl), minimum=minimum)

    def incr_and_sum(self, key: str, keys: Callable[[], list[str]], amount: int,
                     maximum: int, ttl: int) -> bool:
        self.store.messages.counter_add(key, 0, int(ttl))
        return self.store.messages.counter_incr_and_sum(
            key, list(keys()), amount, maximum, int(ttl))

    def wait(self, key: str, timeout: int) -> bool:
        deadline = time.monotonic() + timeout / 1000
        with listen_connection(self.url) as conn:  # DAGQ_LISTEN=off: polls
            conn.execute(queries()["listen_counters"])
            while True:
                if self.store.messages.counter_value(key):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                for note in conn.notifies(timeout=min(left, RECHECK_S)):
                    if note.payload == key:
                        break

    def wait_notify(self, key: str, ttl: int) -> None:
        self.store.messages.counter_change(key, 1, int(ttl), notify=True)
