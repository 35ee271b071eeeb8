"""Connections: resolve the database URL (embedded server or DAGQ_DATABASE_URL), open pools."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from app.config import Settings
from app.embedded_pg import EmbeddedPostgres

log = logging.getLogger("dagq.db")

_embedded: EmbeddedPostgres | None = None


def resolve_database_url(settings: Settings) -> str:
    """DAGQ_DATABASE_URL if set, else start (or join) the embedded server."""
    global _embedded
    if settings.database_url:
        return settings.database_url
    if _embedded is None:
        _embedded = EmbeddedPostgres(Path(settings.data_dir))
    return _embedded.start()


def release_embedded() -> bool:
    """Give up this process's handle on the embedded server (stops it if last)."""
    global _embedded
    if _embedded is None:
        return False
    stopped = _embedded.release()
    _embedded = None
    return stopped


def _configure(conn: psycopg.Connection) -> None:
    conn.prepare_threshold = 0  # hot statements: prepare on first use


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=autocommit, row_factory=dict_row)
    _configure(conn)
    return conn


def open_pool(url: str, *, size: int, name: str = "dagq") -> ConnectionPool:
    """A pool whose connections return dict rows and prepare statements on first use."""
    pool = ConnectionPool(
        url,
        min_size=1,
        max_size=size,
        kwargs={"row_factory": dict_row},
        configure=_configure,
        name=name,
        open=False,
        reconnect_timeout=3600,
    )
    pool.open(wait=True, timeout=30)
    return pool
