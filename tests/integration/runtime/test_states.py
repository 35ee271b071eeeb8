"""dagq.states and the database agree: the status CHECK constraints the migrations
build allow exactly the statuses Python knows."""

from __future__ import annotations

import re

import psycopg

from dagq.states import NODE_STATUSES, RUN_STATUSES

CHECK = """SELECT pg_get_constraintdef(k.oid) AS definition FROM pg_constraint k
           WHERE k.conrelid = %s::regclass AND k.contype = 'c'
             AND pg_get_constraintdef(k.oid) LIKE '%%status%%'"""


def allowed(sql: psycopg.Connection, table: str) -> set[str]:
    [definition] = [row["definition"] for row in sql.execute(CHECK, (table,)).fetchall()]
    return set(re.findall(r"'([a-z_]+)'::text", definition))


def test_status_checks_allow_exactly_the_known_statuses(sql: psycopg.Connection) -> None:
    assert allowed(sql, "dagq.runs") == RUN_STATUSES
    assert allowed(sql, "dagq.node_tasks") == NODE_STATUSES
