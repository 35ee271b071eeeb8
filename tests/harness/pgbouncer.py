"""PgBouncer (Debian's 1.18, pool_mode=transaction) in front of test Postgres servers:
before the session's server, or before a small server of its own (max_connections 40,
the production shape the issue asks for: more dagq processes than server connections).

Tests that need it skip with the reason when pgbouncer is not installed (./scripts/test
installs it as root with apt-get)."""

from __future__ import annotations

import configparser
import contextlib
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dagq.bench.pgbouncer import PgBouncer, find_pgbouncer
from dagq.runtime.embedded_pg import EmbeddedPostgres
from dagq.runtime.migrate import migrate
from tests.harness.procs import ROOT

EXAMPLE = ROOT / "examples" / "deploy" / "pgbouncer.ini"
# Where the example differs from a test by its site, not by how PgBouncer pools.
SITE_SETTINGS = {"listen_addr", "listen_port", "auth_type", "auth_file", "logfile", "pidfile"}


def require_pgbouncer() -> None:
    if find_pgbouncer() is None:
        pytest.skip("pgbouncer is not installed (./scripts/test installs Debian's as root)")


@contextlib.contextmanager
def pgbouncer(server_url: str, **options: int | str) -> Iterator[PgBouncer]:
    require_pgbouncer()
    bouncer = PgBouncer(server_url, **options)  # type: ignore[arg-type]
    with bouncer:
        yield bouncer


def example_settings() -> dict[str, str]:
    """The [pgbouncer] settings of examples/deploy/pgbouncer.ini but its site's (address,
    auth, files): the PgBouncer tests run the documented configuration."""
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
    parser.read_string(EXAMPLE.read_text())
    return {name: value for name, value in parser["pgbouncer"].items()
            if name not in SITE_SETTINGS}


@contextlib.contextmanager
def small_server(tmp: Path, max_connections: int = 40) -> Iterator[str]:
    """An embedded Postgres of its own with `max_connections`, database `dagq` migrated;
    yields its direct URL."""
    server = EmbeddedPostgres(tmp / "pg", database="dagq")
    url = server.start()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"ALTER SYSTEM SET max_connections = {int(max_connections)}")
        server.stop_server()  # max_connections takes a restart
        url = server.start()
        migrate(url)
        yield url
    finally:
        server.release()
