"""docs/schema.md describes exactly what the migrations build."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from dagq.runtime.schema_doc import describe

DOC = Path(__file__).resolve().parents[3] / "docs" / "schema.md"


def test_docs_schema_md_matches_the_migrated_database(db_url: str) -> None:
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        current = describe(conn)
    assert "## Table `dagq.node_tasks`" in current and "## View `dagq.queue_depth`" in current
    assert DOC.read_text() == current, (
        "docs/schema.md is out of date: regenerate it with "
        "`python -m dagq.runtime.schema_doc > docs/schema.md`")
