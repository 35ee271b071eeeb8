"""Apply the numbered migrations in sql/migrations under an advisory lock."""

from __future__ import annotations

import logging

import psycopg

from dagq.db import SessionLimits, conninfo
from dagq.sqlfiles import migrations, queries

log = logging.getLogger("dagq.migrate")

# Any constant works; it only has to be the same in every dagq process.
MIGRATION_LOCK_KEY = 0x6461_6771_0001


def migrate(url: str) -> list[int]:
    """Apply pending migrations; safe to run concurrently and repeatedly.

    Returns the versions applied by this call (empty when the schema was current).
    The session is bounded like every dagq session, with the longer statement and lock
    timeouts of migrations (DAGQ_DB_MIGRATION_TIMEOUT_S: waiting for another migrator).
    """
    q = queries()
    applied_now: list[int] = []
    with psycopg.connect(conninfo(url, SessionLimits.for_migrations()), autocommit=True) as conn:
        conn.execute(q["migration_lock"], {"key": MIGRATION_LOCK_KEY})
        try:
            conn.execute(q["create_schema_migrations"])
            done = {row[0] for row in conn.execute(q["applied_migrations"])}
            for migration in migrations():
                if migration.version in done:
                    continue
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        q["record_migration"],
                        {"version": migration.version, "name": migration.name},
                    )
                log.info("applied migration %03d_%s", migration.version, migration.name)
                applied_now.append(migration.version)
        finally:
            conn.execute(q["migration_unlock"], {"key": MIGRATION_LOCK_KEY})
    return applied_now


def pending_migrations(conn: psycopg.Connection) -> list[int]:
    """Versions not yet applied (all of them when the schema does not exist)."""
    q = queries()
    exists = conn.execute(q["schema_migrations_exists"]).fetchone()
    done: set[int] = set()
    if exists and _first(exists):
        done = {_first(row) for row in conn.execute(q["applied_migrations"])}
    return [m.version for m in migrations() if m.version not in done]


def _first(row: object) -> object:
    return next(iter(row.values())) if isinstance(row, dict) else row[0]  # type: ignore[index]
