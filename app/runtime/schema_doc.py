"""The current schema, described from a migrated database's catalog: what
docs/schema.md holds. `python -m dagq.runtime.schema_doc > docs/schema.md` rewrites it
(against DAGQ_DATABASE_URL, or an embedded Postgres); tests/integration/runtime/test_schema_doc.py
fails when the file no longer matches what the migrations build."""

from __future__ import annotations

import sys
from typing import Any

import psycopg
from psycopg.rows import dict_row

from dagq.runtime.sqlfiles import queries

HEADER = """# The dagq schema

Generated from the migrations in `sql/migrations/` by `dagq db migrate && python -m
dagq.runtime.schema_doc > docs/schema.md`; a test fails when it is out of date. Everything
lives in the schema `dagq`.
"""


def describe(conn: psycopg.Connection[Any]) -> str:
    """Markdown: every table (columns, constraints, indexes), view and function."""
    q = queries()
    out = [HEADER]
    columns = conn.execute(q["schema_columns"]).fetchall()
    constraints = conn.execute(q["schema_constraints"]).fetchall()
    indexes = conn.execute(q["schema_indexes"]).fetchall()
    for table in sorted({c["table_name"] for c in columns if c["kind"] == "table"}):
        out.append(f"\n## Table `dagq.{table}`\n")
        partitioned_by = next((c["partitioned_by"] for c in columns
                               if c["table_name"] == table and c["partitioned_by"]), None)
        if partitioned_by:
            out.append(f"Partitioned by `{partitioned_by}` (the partitions are not listed).\n")
        out.append("| column | type | null | default |\n|---|---|---|---|")
        for c in (c for c in columns if c["table_name"] == table):
            default = f"`{c['default_value']}`" if c["default_value"] else ""
            out.append(f"| `{c['column_name']}` | {c['data_type']} | "
                       f"{'yes' if c['nullable'] else 'no'} | {default} |")
        out.extend(_listed("Constraints", [f"`{r['name']}`: `{r['definition']}`"
                                           for r in constraints if r["table_name"] == table]))
        out.extend(_listed("Indexes", [f"`{r['definition']}`"
                                       for r in indexes if r["table_name"] == table]))
    for view in sorted({c["table_name"] for c in columns if c["kind"] == "view"}):
        names = ", ".join(f"`{c['column_name']}`" for c in columns if c["table_name"] == view)
        out.append(f"\n## View `dagq.{view}`\n\nColumns: {names}.")
    functions = conn.execute(q["schema_functions"]).fetchall()
    if functions:
        out.append("\n## Functions\n")
        out.extend(f"- `dagq.{f['name']}({f['arguments']})` returns {f['result']}"
                   for f in functions)
    return "\n".join(out) + "\n"


def _listed(title: str, items: list[str]) -> list[str]:
    return [f"\n{title}:\n", *(f"- {item}" for item in items)] if items else []


def main() -> int:
    from dagq.config import get_settings
    from dagq.runtime.bootstrap import database

    with database(get_settings()) as db, psycopg.connect(db.url, row_factory=dict_row) as conn:
        sys.stdout.write(describe(conn))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
