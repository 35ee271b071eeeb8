"""The named queries the code uses are exactly the ones sql/queries/*.sql define."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dagq.sqlfiles import migrations, parse_queries, queries

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
    defined = set(parse_queries((ROOT / "sql" / "bench.sql").read_text()))
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
