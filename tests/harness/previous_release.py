"""The previous landed release of dagq, runnable beside this checkout (issue 29, point 4:
rolling upgrades).

`git archive` writes that commit's `app/`, `workers/` and `sql/` into a temporary folder,
laid out as the import package `dagq` (`app/` is `dagq`, `workers/` is `dagq.workers`,
`sql/` is `dagq.sql`, as pyproject.toml maps them). A process started with that folder on
PYTHONPATH imports the old code: PYTHONPATH comes before the editable install's path on
`sys.path`. It runs with this checkout's interpreter and libraries, which satisfy the old
release's pins (pyproject.toml only ever raised them since).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from dagq.runtime.procs import die_with_parent
from tests.harness.procs import ROOT, stop_procs

# The last commit that landed before issue 29's work (the end of 0.3's second session):
# its newest migration is 024, and every migration since declares `compatible-with 24`.
PREVIOUS_RELEASE = "9cfb2b017dee4d90a0cf518efcdb9b4b41c3627e"
PREVIOUS_LATEST_MIGRATION = 24


def available() -> bool:
    """Whether this clone has the commit (a shallow clone may not)."""
    done = subprocess.run(["git", "cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}"],
                          cwd=ROOT, capture_output=True)
    return done.returncode == 0


def materialize(dest: Path) -> Path:
    """The previous release as an importable `dagq` under `dest`; returns the folder to
    put on PYTHONPATH."""
    archive = subprocess.run(["git", "archive", "--format=tar", PREVIOUS_RELEASE,
                              "app", "workers", "sql"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    source = dest / "source"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(source, filter="data")
    package = dest / "pythonpath" / "dagq"
    shutil.copytree(source / "app", package)
    shutil.copytree(source / "workers", package / "workers")
    shutil.copytree(source / "sql", package / "sql")
    return dest / "pythonpath"


class PreviousRelease:
    """Processes of the previous release against one database; all stopped by `stop_all`."""

    def __init__(self, pythonpath: Path, db_url: str, logs: Path) -> None:
        self.pythonpath = pythonpath
        self.db_url = db_url
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("DAGQ_")}
        env.update({"DAGQ_DATABASE_URL": self.db_url, "PYTHONPATH": str(self.pythonpath),
                    "DAGQ_HEARTBEAT_S": "0.5", "DAGQ_LEASE_TTL_S": "5",
                    "DAGQ_LOG_LEVEL": "INFO", "DAGQ_AUTH": "off"})
        env.update(extra)
        return env

    def imports_itself(self) -> Path:
        """Where `import dagq` resolves in a process of this release (a self-check)."""
        done = subprocess.run([sys.executable, "-c", "import dagq; print(dagq.__file__)"],
                              cwd=self.pythonpath, env=self.env(), capture_output=True,
                              text=True, check=True)
        return Path(done.stdout.strip())

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`dagq ARGS` of the previous release, to its end."""
        return subprocess.run(
            [sys.executable, "-c", "from dagq.cli import main; raise SystemExit(main())", *args],
            cwd=self.pythonpath, env=self.env(), capture_output=True, text=True,
            timeout=timeout)

    def start(self, name: str, *argv: str, **env: str) -> subprocess.Popen[bytes]:
        """`python ARGV` of the previous release (e.g. `-m dagq.workers --queues q`)."""
        log = open(self.logs / f"previous-{name}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, *argv], cwd=self.pythonpath,
                                env=self.env(**env), stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_parent)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        stop_procs(self.procs, 15)

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:]
                         for p in sorted(self.logs.glob("previous-*.log")))
