"""sql/schema.sql is the DDL exactly as the migrations build it (documentation only:
nothing executes it)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from dagq.runtime.schema_sql import NoPgDump, clean, dump, find_pg_dump, major_of, majors_of_file

SCHEMA_SQL = Path(__file__).resolve().parents[3] / "sql" / "schema.sql"


def _usable_pg_dump(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        major = conn.info.server_version // 10000
    made_with = majors_of_file(SCHEMA_SQL.read_text())
    try:
        pg_dump = find_pg_dump(major)
    except NoPgDump as e:  # only without dagq[embedded] against a newer external server
        pytest.skip(f"cannot check sql/schema.sql: {e}")
    here = (major, major_of(pg_dump))
    if made_with is not None and made_with != here:  # DAGQ_TEST_DATABASE_URL on another major
        pytest.skip(f"sql/schema.sql is made on PostgreSQL {made_with[0]} with pg_dump "
                    f"{made_with[1]}; here they are {here[0]} and {here[1]}")


def test_sql_schema_sql_matches_the_migrated_database(db_url: str) -> None:
    _usable_pg_dump(db_url)
    current = dump(db_url)
    assert "CREATE TABLE dagq.node_tasks" in current and "CREATE VIEW dagq.queue_depth" in current
    assert "CREATE FUNCTION dagq.start_leases(" in current  # with its body
    assert SCHEMA_SQL.read_text() == current, (
        "sql/schema.sql is out of date: regenerate it with "
        "`python -m dagq.runtime.schema_sql > sql/schema.sql` (DAGQ_DATABASE_URL or embedded)")


def test_the_dump_is_the_same_every_time(db_url: str) -> None:
    _usable_pg_dump(db_url)
    assert dump(db_url) == dump(db_url)


def test_clean_drops_what_varies_between_runs() -> None:
    raw = ("--\n-- Dumped from database version 18.6\n-- Dumped by pg_dump version 18.6\n"
           "\\restrict AbC123\nSET statement_timeout = 0;\n"
           "SELECT pg_catalog.set_config('search_path', '', false);\n\n\n\n"
           "CREATE TABLE dagq.t (id integer);\n"
           "CREATE FUNCTION dagq.f() RETURNS void LANGUAGE sql AS $$\n"
           "SET LOCAL work_mem = '1MB';\n$$;\n\\unrestrict AbC123\n")
    out = clean(raw, 18, 18)
    assert "Dumped" not in out and "restrict" not in out and "statement_timeout" not in out
    assert "set_config" not in out and "\n\n\n" not in out
    assert "CREATE TABLE dagq.t (id integer);\n" in out
    assert "SET LOCAL work_mem = '1MB';\n$$;\n" in out  # a body's own SET line is kept
    assert majors_of_file(out) == (18, 18)
