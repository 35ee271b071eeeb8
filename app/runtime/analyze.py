"""ANALYZE of dagq's tables that hold rows but were never analyzed.

Autovacuum analyzes a table only once enough rows changed since it last did, and
`pg_restore`, `pg_upgrade` (before PostgreSQL 18) and a bulk load leave tables with rows
and no statistics at all. In that state the planner guesses, and three hot statements'
plans flip (tests/integration/store/test_plans_in_busy_states.py: a fair lease 62-312 ms
instead of 2-12). `dagq db migrate` and the sweeper's `analyze` pass close the window.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql

from dagq.runtime.sqlfiles import queries

log = logging.getLogger("dagq.db")


def analyze_never_analyzed(conn: psycopg.Connection[Any]) -> list[str]:
    """ANALYZE each such table (on an autocommit connection); their names."""
    names = [row[0] if isinstance(row, tuple) else row["name"]
             for row in conn.execute(queries()["never_analyzed_tables"]).fetchall()]
    for name in names:
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier("dagq", name)))
        log.info("analyzed dagq.%s (rows, and no statistics yet)", name)
    return names
