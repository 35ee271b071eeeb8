"""Named SQL queries from `sql/queries/*.sql` (one file per module that runs them) and
migrations from `sql/migrations/`.

A query is a block that starts with `-- name: NAME`, followed by comment lines that
describe it, then the statement. Parameters are psycopg named placeholders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

# Installed as the package data of `dagq.sql` (the repository's sql/ folder).
SQL_DIR = files("dagq.sql")
_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_MIGRATION = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")
# A migration's header may say which older code still works on the schema it leaves:
# `-- dagq:compatible-with 21` (the latest migration that code knows). See docs/upgrading.md.
_COMPATIBLE_WITH = re.compile(r"^--\s*dagq:compatible-with\s+(\d+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    # The oldest code (by its latest migration) that still works once this one is
    # applied; by default only code that knows this migration.
    compatible_with: int = 0

    def __post_init__(self) -> None:
        if not self.compatible_with:
            object.__setattr__(self, "compatible_with", self.version)
        if self.compatible_with > self.version:
            raise ValueError(f"migration {self.version:03d} says dagq:compatible-with "
                             f"{self.compatible_with}, a later version than itself")


def parse_queries(text: str) -> dict[str, str]:
    """Split a queries file into {name: statement}; duplicate names are an error."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        statement = "\n".join(
            line for line in body.splitlines() if not line.lstrip().startswith("--")
        ).strip()
        if not statement:
            raise ValueError(f"query {name!r} has no statement")
        queries[name] = statement.rstrip(";")
    return queries


@lru_cache(maxsize=1)
def queries() -> dict[str, str]:
    """Every named query of every file in sql/queries/; a name defined in two files is
    an error, as within one."""
    merged: dict[str, str] = {}
    for path in sorted((SQL_DIR / "queries").iterdir(), key=lambda p: p.name):
        if not path.name.endswith(".sql"):
            continue
        for name, statement in parse_queries(path.read_text()).items():
            if name in merged:
                raise ValueError(f"query {name!r} is defined twice ({path.name})")
            merged[name] = statement
    return merged


def migration_file(filename: str, text: str) -> Migration | None:
    """The migration a file `NNN_name.sql` holds (None: not a migration's name)."""
    match = _MIGRATION.match(filename)
    if not match:
        return None
    declared = _COMPATIBLE_WITH.search(text)
    return Migration(int(match.group(1)), match.group(2), text,
                     int(declared.group(1)) if declared else 0)


def migrations() -> list[Migration]:
    found = []
    for path in sorted((SQL_DIR / "migrations").iterdir(), key=lambda p: p.name):
        migration = migration_file(path.name, path.read_text()) \
            if _MIGRATION.match(path.name) else None
        if migration is not None:
            found.append(migration)
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise ValueError("two migrations share a version number")
    return found
