"""The tests' own layout (issue 28): what tests share lives in tests/harness and is imported
from there only, never from another test module or a conftest (pytest alone loads those);
nothing in tests/harness looks like a test module to pytest; and tests/integration mirrors
the package, one folder per package of dagq.

Imports: every `import tests...` / `from tests... import` in tests/, at module level or
inside functions (a deferred import is still a dependency), and every relative import (it
would name a sibling without saying `tests.`).
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
HARNESS = TESTS / "harness"
# The package each folder of tests/integration stands for. machine/ holds the tests of the
# store's run/node state machine (its transitions, releases, sub-workflows and waits).
MIRRORED = {"api": "dagq.api", "client": "dagq.client", "cli": "dagq.cli",
            "machine": "dagq.store.machine", "runtime": "dagq.runtime",
            "service": "dagq.service", "store": "dagq.store", "sweeper": "dagq.sweeper",
            "testing": "dagq.testing", "workers": "dagq.workers"}


def modules_under_tests() -> list[Path]:
    return sorted(path for path in TESTS.rglob("*.py") if "artifacts" not in path.parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in `path`; a relative import as its dots and name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            if node.level or base != "tests":
                found.append((node.lineno, base))
            else:  # `from tests import x`: x is the module imported
                found.extend((node.lineno, f"tests.{alias.name}") for alias in node.names)
    return found


def allowed(module: str) -> bool:
    """Not relative, and either outside tests or inside tests.harness."""
    first = module.split(".")[0]
    return first != "" and (first != "tests" or module.split(".")[:2] == ["tests", "harness"])


def python_files_patterns() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    options = pyproject["tool"]["pytest"]["ini_options"]
    patterns = options.get("python_files", ["test_*.py", "*_test.py"])
    return patterns.split() if isinstance(patterns, str) else list(patterns)


def test_tests_import_helpers_from_the_harness_only() -> None:
    wrong = [f"{path.relative_to(ROOT)}:{line}: {module}"
             for path in modules_under_tests() for line, module in imported_modules(path)
             if not allowed(module)]
    assert not wrong, ("import what tests share from tests.harness (move the helper there); "
                       "never from a test module or a conftest, never relatively:\n"
                       + "\n".join(wrong))


def test_the_rule_sees_the_imports_it_forbids(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from tests.integration.store.test_reruns import x\n"
                      "from tests import helpers, harness\n"
                      "from . import conftest\n"
                      "def f():\n    import tests.e2e.conftest\n"
                      "from tests.harness.specs import spec\nimport dagq\n")
    refused = [m for _, m in imported_modules(sample) if not allowed(m)]
    assert refused == ["tests.integration.store.test_reruns", "tests.helpers", ".",
                       "tests.e2e.conftest"]


def test_no_harness_module_is_collected_or_a_conftest() -> None:
    patterns = python_files_patterns()
    names = [path.name for path in HARNESS.rglob("*.py")]
    assert "__init__.py" in names, "tests/harness must be a package"
    collected = [n for n in names
                 if n == "conftest.py" or any(fnmatch.fnmatch(n, p) for p in patterns)]
    assert not collected, f"tests/harness holds what pytest would load itself: {collected}"


def test_integration_tests_mirror_the_package() -> None:
    integration = TESTS / "integration"
    loose = sorted(p.name for p in integration.glob("test_*.py"))
    assert not loose, f"put these in the folder of the package they test: {loose}"
    folders = {p.name for p in integration.iterdir()
               if p.is_dir() and p.name != "__pycache__"}
    assert folders <= set(MIRRORED), f"no package of dagq for: {folders - set(MIRRORED)}"
    for folder in folders:
        assert (integration / folder / "__init__.py").exists(), folder
        assert importlib.util.find_spec(MIRRORED[folder]) is not None, MIRRORED[folder]
