"""Settings -> database URL (an embedded Postgres when none is configured) -> a schema
that fits the code: the one start-up sequence every dagq process uses, before it opens
its own pool (the CLI's one-shot commands: dagq.cli.backend.repository).

Only `dagq db migrate` and `dagq up` (on the embedded database it owns) create the
embedded database and apply migrations; every other process, the children `dagq up`
starts included, finds the database or says in one line there is none, then checks the
schema (dagq.runtime.migrate.check_schema): behind the code or incompatibly ahead of it, it
stops with one line saying what to run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dagq.config import Settings
from dagq.errors import DagqError
from dagq.runtime.db import release_embedded, resolve_database_url
from dagq.runtime.pooler import detect


@dataclass(frozen=True)
class Database:
    url: str
    applied: list[int]  # the migrations this start applied (empty: the schema was current)


@contextlib.contextmanager
def database(settings: Settings, *, migrate: bool = False, check: bool = True,
             on_release: Callable[[], None] | None = None) -> Iterator[Database]:
    """The database to use. `migrate` (the migrators only): create the embedded database
    if there is none and apply pending migrations; otherwise the database must exist.
    Then, if `check`, the schema must fit this code (SchemaMismatch otherwise). An
    embedded Postgres this process started is stopped on exit (then `on_release`)."""
    from dagq.runtime.migrate import check_schema
    from dagq.runtime.migrate import migrate as apply_migrations

    url = resolve_database_url(settings, create=migrate)
    detect(url, settings)  # a pooler: no startup options from here on (runtime.pooler)
    try:
        applied = apply_migrations(migration_url(url, settings)) if migrate else []
        if check:
            check_schema(url)
        yield Database(url, applied)
    finally:
        if release_embedded() and on_release is not None:
            on_release()


def migration_url(url: str, settings: Settings) -> str:
    """Where migrations run: `url`, unless it goes through a connection pooler. Their
    lock is a session advisory lock (one migrator at a time), which a transaction pooler
    would leave held on a server session it then gives to others; so through a pooler
    they use DAGQ_LISTEN_URL when that reaches the server directly, and otherwise
    DagqError says what to do."""
    if not detect(url, settings).pooled:
        return url
    if settings.listen_url and not detect(settings.listen_url, settings).pooled:
        return settings.listen_url
    raise DagqError("migrations need a direct connection (a session lock), and "
                    "DAGQ_DATABASE_URL goes through a connection pooler: set "
                    "DAGQ_LISTEN_URL to the server itself, or run `dagq db migrate` with "
                    "DAGQ_DATABASE_URL set to it")


@contextlib.contextmanager
def process_database(settings: Settings,
                     say: Callable[[str], object]) -> Iterator[Database | None]:
    """`database()` for a long-running process (API, worker, sweeper): None, having
    passed the one-line reason to `say`, when there is no database or its schema does
    not fit this code. That is configuration, not transient: the process exits with
    dagq.runtime.procs.EXIT_CANNOT_START, and its parent backs off instead of restarting it."""
    from dagq.errors import NoDatabase
    from dagq.runtime.migrate import SchemaMismatch

    with contextlib.ExitStack() as stack:
        try:
            db: Database | None = stack.enter_context(database(settings))
        except (NoDatabase, SchemaMismatch) as exc:
            say(exc.message)
            db = None
        yield db


def process_settings(default_level: str = "INFO") -> Settings:
    """The settings of a dagq process (`python -m dagq.workers|api|sweeper`), with its
    logging set up. Bad settings (DAGQ_LOG_FORMAT=xml, say): one line on stderr, and the
    process exits with EXIT_CANNOT_START, as for any reason it cannot start."""
    import sys

    from dagq.config import describe_invalid, get_settings
    from dagq.runtime.logs import setup_logging
    from dagq.runtime.procs import EXIT_CANNOT_START

    try:
        settings = get_settings()
    except ValueError as exc:
        print(f"dagq: error: invalid configuration: {describe_invalid(exc)}", file=sys.stderr)
        raise SystemExit(EXIT_CANNOT_START) from None
    setup_logging(settings.log_level, default_level, fmt=settings.log_format)
    return settings
