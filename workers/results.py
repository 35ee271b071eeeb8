"""`dagq.PostgresResultBackend`: Dramatiq's Results middleware with only Postgres.

    from dramatiq.results import Results
    from dagq import PostgresBroker, PostgresResultBackend

    broker = PostgresBroker(url=DATABASE_URL)
    broker.add_middleware(Results(backend=PostgresResultBackend(url=DATABASE_URL)))

Results are rows of `dagq.dramatiq_results` (key, encoded value, expiry from the
result's TTL). A blocking `get_result` LISTENs on `dagq_results` (the writer notifies
the key after commit) instead of polling: it reads the row, then waits for a
notification naming its key, reading again each time (and at least every
RECHECK_S, should a notification be lost).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from dramatiq.results import ResultBackend, ResultMissing, ResultTimeout
from dramatiq.results.backend import DEFAULT_TIMEOUT, Missing

from dagq.runtime.listening import listen_connection
from dagq.runtime.sqlfiles import queries
from dagq.store import Store

RECHECK_S = 1.0
PRUNE_EVERY = 200  # stores between two prunes of expired results


class PostgresResultBackend(ResultBackend):
    """Results in Postgres; `url` (default: DAGQ_DATABASE_URL) or a dagq `store`."""

    def __init__(self, *, url: str | None = None, store: Store | None = None,
                 pool_size: int = 4, **options: Any) -> None:
        super().__init__(**options)
        if store is None:
            from dagq.workers.standalone import own_store  # (its pool, as the broker's)

            store, url = own_store(url, owner="PostgresResultBackend", name="dramatiq-results",
                                   size=pool_size, generic_plans=False)
        self.url = url or store.db.pool.conninfo
        self.store = store
        self._stores = 0

    def _get(self, message_key: str) -> Any:
        value = self.store.messages.get_result(message_key)
        return Missing if value is None else self.encoder.decode(value)

    def _store(self, message_key: str, result: Any, ttl: int) -> None:
        self.store.messages.store_result(message_key, self.encoder.encode(result), int(ttl))
        self._stores += 1
        if self._stores % PRUNE_EVERY == 0:
            self.store.messages.prune_results()

    def get_result(self, message: Any, *, block: bool = False,
                   timeout: int | None = None) -> Any:
        key = self.build_message_key(message)
        if not block:
            result = self._get(key)
            if result is Missing:
                raise ResultMissing(message)
            return self.unwrap_result(result)
        deadline = time.monotonic() + (DEFAULT_TIMEOUT if timeout is None else timeout) / 1000
        result = self._wait(key, deadline)
        if result is Missing:
            raise ResultTimeout(message)
        return self.unwrap_result(result)

    def _wait(self, key: str, deadline: float) -> Any:
        """LISTEN first, then read: a result stored in between is not missed."""
        with listen_connection(self.url) as conn:  # DAGQ_LISTEN=off: polls
            conn.execute(queries()["listen_results"])
            while True:
                result = self._get(key)
                left = deadline - time.monotonic()
                if result is not Missing or left <= 0:
                    return result
                try:
                    for note in conn.notifies(timeout=min(left, RECHECK_S)):
                        if note.payload == key:
                            break
                except psycopg.OperationalError:  # lost the connection: read, then fail
                    return self._get(key)
