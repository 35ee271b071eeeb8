"""The named queries the code uses are exactly the ones sql/queries/*.sql define."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dagq.runtime.sqlfiles import migrations, parse_queries, queries

ROOT = Path(__file__).resolve().parents[2]
USE = re.compile(r"""(?:queries\(\)|\bq)\[["']([a-z_0-9]+)["']\]""")


def is_bench(path: Path) -> bool:
    return "bench" in path.relative_to(ROOT).parts  # dagq.bench runs sql/bench.sql, not ours


def used_names(*, bench: bool) -> set[str]:
    names: set[str] = set()
    for folder in ("app", "workers"):  # the dagq package and dagq.workers
        for path in (ROOT / folder).rglob("*.py"):
            if is_bench(path) == bench:
                names |= set(USE.findall(path.read_text()))
    return names


def test_every_used_query_is_defined_and_every_defined_query_is_used() -> None:
    defined, used = set(queries()), used_names(bench=False)
    assert used - defined == set(), "used but not defined"
    assert defined - used == set(), "defined but never used"


def test_the_benchmark_uses_only_its_own_queries() -> None:
    defined = {name for path in (ROOT / "sql").glob("bench*.sql")  # bench_bulk.sql too
               for name in parse_queries(path.read_text())}
    assert used_names(bench=True) - defined == set()


def test_parser_rejects_duplicates_and_empty_blocks() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n")
    with pytest.raises(ValueError, match="no statement"):
        parse_queries("-- name: a\n-- only a comment\n")


def test_descriptions_are_stripped() -> None:
    parsed = parse_queries("-- name: a\n-- what it does\nSELECT 1;\n")
    assert parsed == {"a": "SELECT 1"}


def test_migrations_are_numbered_in_order() -> None:
    versions = [m.version for m in migrations()]
    assert versions == sorted(versions) and versions[0] == 1
    assert len(versions) == len(set(versions))


def test_a_migration_header_declares_the_oldest_compatible_code() -> None:
    """Issue 27, 3: `-- dagq:compatible-with N` (default: only code that knows it)."""
    from dagq.runtime.sqlfiles import migration_file

    expand = migration_file("023_add_column.sql",
                            "-- Adds a nullable column.\n-- dagq:compatible-with 21\n"
                            "ALTER TABLE dagq.runs ADD COLUMN x int;\n")
    assert expand is not None and (expand.version, expand.compatible_with) == (23, 21)
    strict = migration_file("024_drop.sql", "ALTER TABLE dagq.runs DROP COLUMN y;\n")
    assert strict is not None and strict.compatible_with == 24
    assert migration_file("notes.sql", "") is None
    with pytest.raises(ValueError, match="later version than itself"):
        migration_file("025_x.sql", "-- dagq:compatible-with 30\nSELECT 1;\n")
    assert all(m.compatible_with <= m.version for m in migrations())
