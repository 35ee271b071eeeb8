"""Outside the project directory, with no DAGQ_DATABASE_URL, no command but `dagq up`
and `dagq db migrate` makes an embedded database (issue 27, point 4): each says so in
one line and exits non-zero, leaving no `.dagq` behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.harness.procs import ROOT, free_port

pytestmark = pytest.mark.e2e

RUN_ID = str(uuid.uuid4())
COMMANDS = [
    ["runs"], ["run", "show", RUN_ID], ["run", "follow", RUN_ID],
    ["submit", str(ROOT / "examples" / "support-answer.json")], ["signal", RUN_ID, "go"],
    ["keys", "create", "--tenant", "t"], ["schedules", "list"], ["tenants", "list"],
    ["db", "status"], ["worker", "--processes", "1"], ["sweeper"], ["api", "--port", "PORT"],
]


def dagq(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DAGQ_DATABASE_URL", "DAGQ_DATA_DIR", "DAGQ_URL")}
    env.update({"PYTHONPATH": str(ROOT), "DAGQ_LOG_LEVEL": "WARNING"})
    return subprocess.run(
        [sys.executable, "-c", "from dagq.cli import main; raise SystemExit(main())", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_only_up_and_db_migrate_create_the_embedded_database(tmp_path: Path) -> None:
    elsewhere = Path("/tmp") / f"dagq-nodb-{os.getpid()}"  # short: the socket lives inside
    shutil.rmtree(elsewhere, ignore_errors=True)
    elsewhere.mkdir()
    try:
        expected = (f"dagq: error: no database: DAGQ_DATABASE_URL is not set and there is "
                    f"no embedded database in {elsewhere / '.dagq' / 'pg'}; run this in the "
                    "project directory (or set DAGQ_DATA_DIR or DAGQ_DATABASE_URL), or "
                    "create it with `dagq up` or `dagq db migrate`")
        for command in COMMANDS:
            command = [str(free_port()) if part == "PORT" else part for part in command]
            done = dagq(*command, cwd=elsewhere)
            assert done.returncode != 0, command
            assert done.stderr.strip().splitlines() == [expected], command
            assert done.stdout == "", command
            assert not (elsewhere / ".dagq").exists(), command

        created = dagq("db", "migrate", cwd=elsewhere)
        assert created.returncode == 0, created.stderr
        assert (elsewhere / ".dagq" / "pg" / "PG_VERSION").exists()
        listed = dagq("runs", cwd=elsewhere)  # now there is one: it reads it
        assert listed.returncode == 0 and "0 run(s)" in listed.stdout, listed.stderr
        assert not (elsewhere / ".dagq" / "pg" / "postmaster.pid").exists()  # stopped again
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)
