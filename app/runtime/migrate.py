"""Apply the numbered migrations in sql/migrations under an advisory lock, and check at a
process's start that the schema fits its code (docs/upgrading.md).

Only `dagq db migrate` (and `dagq up` on the embedded database it owns) apply
migrations. Every other process calls `check_schema`: a schema behind the code stops it
with one line naming `dagq db migrate`; a schema ahead of it (an older dagq during a
rolling deploy) lets it run only when every migration it does not know declared, in its
`-- dagq:compatible-with N` header, that code at N or later still works on it.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

import psycopg

from dagq.errors import DagqError
from dagq.runtime.analyze import analyze_never_analyzed
from dagq.runtime.db import SessionLimits, conninfo
from dagq.runtime.sqlfiles import Migration, migrations, queries

log = logging.getLogger("dagq.migrate")

# Any constant works; it only has to be the same in every dagq process.
MIGRATION_LOCK_KEY = 0x6461_6771_0001


class SchemaMismatch(DagqError):
    """The database schema does not fit this dagq: behind it (run `dagq db migrate`) or
    newer than it and not declared compatible with it."""


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
                    conn.execute(q["record_migration"], {
                        "version": migration.version, "name": migration.name,
                        "compatible_with": migration.compatible_with})
                log.info("applied migration %03d_%s", migration.version, migration.name)
                applied_now.append(migration.version)
            analyze_never_analyzed(conn)
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


@dataclass(frozen=True)
class Applied:
    """A row of dagq.schema_migrations."""

    version: int
    name: str
    applied_at: datetime.datetime
    compatible_with: int | None  # None: recorded before dagq kept it (strict)

    @property
    def oldest_code(self) -> int:
        """The oldest code (by its latest migration) that works on this schema."""
        return self.version if self.compatible_with is None else self.compatible_with


@dataclass(frozen=True)
class SchemaState:
    """The database's migrations beside this code's."""

    known: list[Migration]  # this code's migrations
    applied: list[Applied]

    @property
    def latest_known(self) -> int:
        return max((m.version for m in self.known), default=0)

    @property
    def pending(self) -> list[Migration]:
        done = {a.version for a in self.applied}
        return [m for m in self.known if m.version not in done]

    @property
    def unknown(self) -> list[Applied]:
        """Applied by a newer dagq: migrations this code does not have."""
        known = {m.version for m in self.known}
        return [a for a in self.applied if a.version not in known]

    @property
    def needs_code(self) -> int:
        """The oldest code the unknown migrations let run (0: there are none)."""
        return max((a.oldest_code for a in self.unknown), default=0)

    @property
    def compatible(self) -> bool:
        return not self.pending and self.latest_known >= self.needs_code


def schema_state(conn: psycopg.Connection) -> SchemaState:
    """Read dagq.schema_migrations (absent: nothing applied); writes nothing."""
    q = queries()
    applied: list[Applied] = []
    exists = conn.execute(q["schema_migrations_exists"]).fetchone()
    if exists and _first(exists):
        applied = [Applied(*row) if not isinstance(row, dict) else Applied(**row)
                   for row in conn.execute(q["schema_migrations_recorded"])]
    return SchemaState(known=migrations(), applied=applied)


def read_schema_state(url: str) -> SchemaState:
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        return schema_state(conn)


def check_schema(url: str) -> SchemaState:
    """What every dagq process but the migrators does at start: return the state if
    this code may run on the schema, else raise SchemaMismatch with one line."""
    state = read_schema_state(url)
    if not state.compatible:
        raise SchemaMismatch(mismatch_message(state))
    if state.unknown:
        log.info("the schema has migrations this dagq does not know (%s); they declare "
                 "code at %03d or later compatible, and this dagq is at %03d",
                 _versions([a.version for a in state.unknown]), state.needs_code,
                 state.latest_known)
    return state


def mismatch_message(state: SchemaState) -> str:
    """One line: what does not fit, and what to do."""
    if state.pending:
        if not state.applied:
            return "the database has no dagq schema yet: run `dagq db migrate` first"
        return (f"the database schema is behind this dagq (pending migrations "
                f"{_versions([m.version for m in state.pending])}): run `dagq db migrate` "
                "first, then start the processes")
    return (f"the database schema is newer than this dagq (migrations "
            f"{_versions([a.version for a in state.unknown])} need dagq at migration "
            f"{state.needs_code:03d} or later; this one is at {state.latest_known:03d}): "
            "run a newer dagq")


def _versions(versions: list[int]) -> str:
    return ", ".join(f"{v:03d}" for v in versions)
