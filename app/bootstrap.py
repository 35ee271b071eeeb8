"""Settings -> database URL (an embedded Postgres when none is configured) -> migrated
schema -> pool: the one start-up sequence every dagq process uses.

`dagq up`, `dagq api`, `dagq worker`, `dagq sweeper` and the CLI's database commands
migrate; the child processes `dagq up` starts (`python -m dagq.api|workers|sweeper`)
do not, since their parent already did and they must not race each other to it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dagq.config import Settings
from dagq.db import open_pool, release_embedded, resolve_database_url

if TYPE_CHECKING:
    from dagq.store import Store


@dataclass(frozen=True)
class Database:
    url: str
    applied: list[int]  # the migrations this start applied (empty: the schema was current)


@contextlib.contextmanager
def database(settings: Settings, *, migrate: bool = True,
             on_release: Callable[[], None] | None = None) -> Iterator[Database]:
    """The database to use, migrated unless `migrate` is false; an embedded Postgres
    this process started is stopped on exit (then `on_release` is called)."""
    from dagq.migrate import migrate as apply_migrations

    url = resolve_database_url(settings)
    try:
        yield Database(url, apply_migrations(url) if migrate else [])
    finally:
        if release_embedded() and on_release is not None:
            on_release()


@contextlib.contextmanager
def repository(settings: Settings, *, pool_size: int = 4,
               name: str = "cli") -> Iterator[Store]:
    """A repository on the migrated database, closed (and the embedded server stopped)
    on exit: what the CLI's one-shot commands use."""
    from dagq.store import Store

    with database(settings) as db:
        repo = Store(open_pool(db.url, size=pool_size, name=name))
        try:
            yield repo
        finally:
            repo.close()
