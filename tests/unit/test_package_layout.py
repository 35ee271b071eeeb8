"""The folders app/, workers/ and sql/ are installed as one import package, `dagq`
(pyproject.toml maps them). Importing them by their folder names instead would load a
second copy of the code beside `dagq` (`app.store.Store is not dagq.store.Store`), and a
package folder missing from pyproject's list would be left out of the wheel."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# The mapped folders (app, workers, sql), read from the one place that maps them.
FOLDER_NAMES = set(_pyproject()["tool"]["setuptools"]["package-dir"].values())


def test_no_module_imports_a_folder_by_its_name() -> None:
    offenders = []
    for folder in ("app", "workers", "sql", "tests", "scripts", "examples"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom)
                         and node.level == 0 else [])
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"
                              for name in names if name.split(".")[0] in FOLDER_NAMES]
    assert not offenders, "import them as dagq.*: " + "; ".join(offenders)


def test_every_package_folder_is_listed_in_pyproject() -> None:
    tool = _pyproject()["tool"]["setuptools"]
    listed = set(tool["packages"])
    mapping: dict[str, str] = tool["package-dir"]
    found = set()
    for package, folder in mapping.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            relative = init.parent.relative_to(base).parts
            found.add(".".join([package, *relative]))
    # A subpackage of a mapped package in a folder of its own (dagq.workers under
    # workers/, not app/workers) is found through its own mapping.
    assert found == listed, (f"packages missing from pyproject.toml: {sorted(found - listed)}; "
                             f"listed without an __init__.py: {sorted(listed - found)}")
