"""docs/architecture.md's "Where each thing lives" lists every module of the package, and
nothing that is gone. The tree is parsed: a module line has a branch (`├── ` / `└── `),
then one name or several separated by commas (a folder ends with `/`), then two spaces and
what it does; its depth (four columns per level) puts it under the folder above it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
SECTION = "## Where each thing lives"


def documented() -> set[str]:
    text = DOC.read_text()
    block = text[text.index(SECTION):].split("```")[1]
    lines = block.strip("\n").splitlines()
    root = lines[0].split()[0]
    parents, found = [root], {root}
    for line in lines[1:]:
        if "── " not in line:
            continue  # a description's second line
        start = line.index("── ") + 3
        depth = start // 4
        names = [name.strip() for name in line[start:].split("  ")[0].split(",")]
        assert all(name.rstrip("/").isidentifier() for name in names), (
            f"docs/architecture.md: two spaces between the names and the text in {line!r}")
        del parents[depth:]
        for name in names:
            found.add(f"{parents[-1]}.{name.rstrip('/')}")
        if len(names) == 1:
            parents.append(f"{parents[-1]}.{names[0].rstrip('/')}")
    return found


def _modules() -> set[str]:
    """Every module's import name, through pyproject.toml's folder -> package mapping."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set()
    for package, folder in tool["package-dir"].items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.add(".".join([package, *parts]))
    return found


def test_the_tree_is_parsed() -> None:
    listed = documented()
    assert {"dagq", "dagq.errors", "dagq.store.leases", "dagq.api.routes.runs",
            "dagq.workers.broker", "dagq.workers.__main__"} <= listed


def test_every_module_is_in_the_docs_map() -> None:
    missing = sorted(_modules() - documented())
    assert not missing, (
        "add these modules to the tree under \"Where each thing lives\" in "
        "docs/architecture.md, each as a line `├── <last part of the name>  <what it does>` "
        f"under its folder: {missing}")


def test_the_docs_map_lists_no_module_that_is_gone() -> None:
    # dashboard/ has no Python: it is listed as a folder, not a module.
    gone = sorted(documented() - _modules() - {"dagq.dashboard"})
    assert not gone, ("these are listed in docs/architecture.md's \"Where each thing lives\" "
                      f"but are not modules of the package; remove or rename them: {gone}")
