"""Test databases: one Postgres server per session, a fresh database per test.

The server is embedded (in a temporary directory) unless DAGQ_TEST_DATABASE_URL points
at one. The schema is migrated once into a template database; each test gets a copy
made with CREATE DATABASE ... TEMPLATE, which takes milliseconds.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from dagq.runtime.embedded_pg import EmbeddedPostgres
from dagq.runtime.migrate import migrate

# Per pytest-xdist worker: workers sharing one server (DAGQ_TEST_DATABASE_URL) must not
# drop and rebuild each other's template.
TEMPLATE = "dagq_test_template" + os.environ.get("PYTEST_XDIST_WORKER", "")


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


class TestServer:
    """Owns the session's server and hands out migrated databases."""

    def __init__(self) -> None:
        self._embedded: EmbeddedPostgres | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        external = os.environ.get("DAGQ_TEST_DATABASE_URL")
        # A server given from outside may be shared by several test processes (the
        # PostgreSQL 15 pass): nothing may change it server-wide.
        self.shared = bool(external)
        if external:
            self.admin_url = external
        else:
            # Short path: the unix socket lives beside the data.
            self._tmp = tempfile.TemporaryDirectory(prefix="dagqt-", dir="/tmp")
            self._embedded = EmbeddedPostgres(Path(self._tmp.name), database="postgres")
            self.admin_url = self._embedded.start()
        self._counter = itertools.count()
        self._prefix = f"dagq_test_{os.getpid()}_"
        self._create(TEMPLATE, template=None, drop=True)
        migrate(with_database(self.admin_url, TEMPLATE))

    def _create(self, name: str, *, template: str | None, drop: bool = False) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            if drop:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)))
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template))
            conn.execute(statement)

    def new_database(self) -> str:
        name = f"{self._prefix}{next(self._counter)}"
        self._create(name, template=TEMPLATE, drop=True)
        return with_database(self.admin_url, name)

    def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))

    def close(self) -> None:
        if self._embedded is not None:
            self._embedded.release()
        if self._tmp is not None:
            self._tmp.cleanup()

    @property
    def embedded(self) -> EmbeddedPostgres | None:
        return self._embedded


@contextlib.contextmanager
def empty_database(server: TestServer, name: str) -> Iterator[str]:
    """A database `name` with no dagq schema at all (not made from the migrated
    template); dropped afterwards. Yields its URL."""
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server.admin_url, name)
    try:
        yield url
    finally:
        server.drop_database(url)
