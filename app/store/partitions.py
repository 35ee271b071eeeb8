"""Time partitions of dagq.run_events and dagq.node_stream (migration 025): the sweeper
creates day partitions ahead and retires whole ones past the retention, with DETACH ...
CONCURRENTLY + DROP (no row-by-row DELETE, no vacuum debt), then ANALYZE of the parents."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from dagq.runtime.sqlfiles import queries
from dagq.store.tx import Database, transient

log = logging.getLogger("dagq.store")


# Day partitions of dagq.run_events and dagq.node_stream exist this many days ahead. The
# sweeper makes them every 10 minutes, and every worker and API process when it starts
# (PartitionRepo.ensure_ahead): with no process started and no sweeper running for longer,
# event writes would have no partition to go to (they fail), so keep it wide.
DAYS_AHEAD = 7


class PartitionRepo:
    """Creating and retiring partitions; safe with several sweepers at once."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @transient
    def create_event_partitions(self, *, days_ahead: int,
                                now: datetime | None = None) -> list[str]:
        """Day partitions of both tables up to `days_ahead` days after today (UTC);
        returns the names of those this call created (none when they exist already)."""
        if days_ahead < 0:
            raise ValueError(f"days_ahead must be 0 or more, not {days_ahead}")
        with self.db.tx(one_statement=True) as cur:
            row = cur.execute(queries()["create_event_partitions"],
                              {"now": now, "days_ahead": days_ahead}).fetchone()
        return list(row["made"]) if row else []

    def ensure_ahead(self) -> list[str]:
        """At a process's start: the partitions of the next DAYS_AHEAD days, if missing
        (a few catalog reads when they exist). Never fails the start: logged."""
        try:
            return self.create_event_partitions(days_ahead=DAYS_AHEAD)
        except psycopg.Error as exc:
            log.warning("could not make the event partitions ahead (%s); the sweeper will", exc)
            return []

    @transient
    def retire_event_partitions(self, *, retention_s: float,
                                now: datetime | None = None) -> list[str]:
        """Detach (CONCURRENTLY: writers and readers of other partitions go on) and drop
        each partition older than the retention and than every run still stored, then
        ANALYZE the parent (also when it was never analysed: after the migration);
        returns the names dropped. Not a transaction: DETACH CONCURRENTLY commits twice.
        Another sweeper retiring at the same time: this one does nothing. A detach
        interrupted earlier (its partition `detach_pending`) is finished with FINALIZE."""
        q = queries()
        with self._retire_lock() as locked:
            if not locked:
                return []
            with self.db.connection(None) as conn:
                rows = conn.execute(q["retirable_event_partitions"],
                                    {"now": now, "retention_s": retention_s}).fetchall()
                dropped = [name for row in rows if (name := self._retire(conn, row))]
                if not dropped:
                    self._log_held_back(conn, retention_s, now)
                if dropped or _first(conn.execute(q["events_never_analyzed"]).fetchone()):
                    conn.execute(q["analyze_events"])
                return dropped

    @contextlib.contextmanager
    def _retire_lock(self) -> Iterator[bool]:
        """Whether this call is the one retiring now (see try_retire_lock): the lock is
        held by a transaction on a connection of its own, opened like the pool's but
        outside it (a pool of one connection would otherwise wait for itself), until
        the block ends."""
        pool = self.db.pool
        with psycopg.connect(pool.conninfo) as guard:  # a transaction: ends with the block
            row = guard.execute(queries()["try_retire_lock"]).fetchone()
            yield bool(row and row[0])

    @staticmethod
    def _retire(conn: psycopg.Connection[Any], row: dict[str, Any]) -> str | None:
        """Detach and drop one retirable partition (its name), or only finish a pending
        detach of one that is not (someone detached it: it stays as a table)."""
        if not (row["retirable"] or row["detach_pending"]):
            return None
        name = sql.Identifier("dagq", row["partition"])
        how = sql.SQL("FINALIZE" if row["detach_pending"] else "CONCURRENTLY")
        conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {} {}")
                     .format(sql.Identifier("dagq", row["parent"]), name, how))
        if not row["retirable"]:
            log.info("finished the pending detach of %s (kept as a table)", row["partition"])
            return None
        conn.execute(sql.SQL("DROP TABLE {}").format(name))
        log.info("retired history partition %s", row["partition"])
        return str(row["partition"])

    @staticmethod
    def _log_held_back(conn: psycopg.Connection[Any], retention_s: float,
                       now: datetime | None) -> None:
        """An open run older than the retention keeps every partition since its start:
        say which, so an operator can end it."""
        row = conn.execute(queries()["oldest_open_run_past_retention"],
                           {"now": now, "retention_s": retention_s}).fetchone()
        if row is not None:
            log.warning("event partitions since %s are kept past the retention while run %s "
                        "(%s) is open", row["created_at"].isoformat(), row["id"],
                        row["status"])


def _first(row: Any) -> Any:
    return next(iter(row.values())) if isinstance(row, dict) else row[0]
