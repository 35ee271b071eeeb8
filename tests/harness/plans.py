"""Reading query plans: a named query as the prepared statement Postgres plans, and the
plan nodes that scan a table (for the tests that pin which index a hot query uses)."""

from __future__ import annotations

import itertools
import re

import psycopg
from psycopg.rows import tuple_row

_probe_names = itertools.count()


def positional(query: str) -> str:
    """The named %(name)s placeholders as $1, $2...: what a prepared statement sees."""
    names: dict[str, int] = {}
    return re.sub(r"%\((\w+)\)s",
                  lambda m: f"${names.setdefault(m.group(1), len(names) + 1)}", query)


def scans_of(plan: dict, relation: str) -> list[dict]:
    """Every plan node that reads `relation`, anywhere in the tree."""
    found = [plan] if plan.get("Relation Name") == relation else []
    for child in plan.get("Plans", []):
        found.extend(scans_of(child, relation))
    return found


def generic_plan(conn: psycopg.Connection, query: str, *, json: bool = False) -> list:
    """EXPLAIN of `query` (named placeholders) as the generic plan workers run it.

    Workers prepare each hot statement and plan it once (plan_cache_mode =
    force_generic_plan, see dagq.runtime.db). PostgreSQL 16+ shows that plan with
    EXPLAIN (GENERIC_PLAN), which 15 lacks; PREPARE (parameter types inferred the same
    way) then EXPLAIN EXECUTE with NULL arguments under force_generic_plan shows the
    same plan on every supported version: the arguments of a generic plan are not
    looked at when planning. Returns EXPLAIN's rows (one with the JSON plan when `json`).
    """
    name = f"dagq_plan_probe_{next(_probe_names)}"
    conn.execute(f"PREPARE {name} AS {positional(query)}")
    try:
        [(count,)] = conn.cursor(row_factory=tuple_row).execute(
            "SELECT cardinality(parameter_types) FROM pg_prepared_statements "
            "WHERE name = %s", (name,)).fetchall()
        arguments = f"({', '.join(['NULL'] * count)})" if count else ""
        options = "(FORMAT JSON) " if json else ""
        with conn.transaction():
            conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            return conn.execute(f"EXPLAIN {options}EXECUTE {name}{arguments}").fetchall()
    finally:  # a session-level object: the caller's connection goes on being used
        conn.execute(f"DEALLOCATE {name}")
