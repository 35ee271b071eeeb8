"""Reading query plans: a named query as the prepared statement Postgres plans, and the
plan nodes that scan a table (for the tests that pin which index a hot query uses)."""

from __future__ import annotations

import re


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
