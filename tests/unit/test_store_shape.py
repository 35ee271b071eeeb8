"""The store's shape (issue 14): transient retries at one level only, and every
concern's statements in its own SQL file."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STORE = ROOT / "app" / "store"


def _methods() -> dict[str, ast.FunctionDef]:
    found = {}
    for path in STORE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef):
                        assert item.name not in found or item.name == "__init__", \
                            f"{item.name} is defined twice in the store"
                        found[item.name] = item
    return found


def _is_transient(method: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "transient" for d in method.decorator_list)


def _calls_on_self(method: ast.FunctionDef) -> set[str]:
    return {node.func.attr for node in ast.walk(method)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "self"}


def test_no_transient_method_calls_another_transient_method() -> None:
    """Nested retries multiply: an inner retry loop inside an outer one retries a
    statement for the product of both budgets (and re-runs committed work)."""
    methods = _methods()
    transient = {name for name, m in methods.items() if _is_transient(m)}
    nested = {f"{name} -> {callee}" for name in transient
              for callee in _calls_on_self(methods[name]) & transient}
    assert transient and nested == set()
