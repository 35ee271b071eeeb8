"""docs/testing.md's snippets are one small project: written out as they are in the page
and run with that project's own pytest, in a subprocess, as a user runs it. Its unit tests
use the fake node; its integration tests use the plugin's fixtures, which start an
embedded Postgres, a worker serving the project's executors, the sweeper and the API, and
submit runs that succeed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.harness.procs import ROOT

DOC = ROOT / "docs" / "testing.md"
# A fenced block whose first line names the file it is: "# path/to/file".
BLOCK = re.compile(r"```(?:python|toml)\n# (?P<path>[\w./]+)\n(?P<body>.*?)```", re.S)


def snippets() -> dict[str, str]:
    return {m["path"]: m["body"] for m in BLOCK.finditer(DOC.read_text())}


def test_the_page_holds_the_whole_project() -> None:
    assert set(snippets()) == {"myproject/executors.py", "tests/test_executors.py",
                               "conftest.py", "pyproject.toml", "tests/test_flows.py"}


def test_the_snippets_run_as_a_project_of_their_own(tmp_path: Path) -> None:
    for path, body in snippets().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(body)
    (tmp_path / "myproject" / "__init__.py").write_text("")
    # The project's own session: nothing of dagq's suite (its conftest, its settings).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "DAGQ_")) and k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-o", "timeout=240"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "7 passed" in done.stdout, done.stdout[-3000:]
