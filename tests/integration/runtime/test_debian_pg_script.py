"""scripts/_debian_pg.sh: the throwaway PostgreSQL 15 cluster scripts/test-lowest runs the
tests on (CI's second PostgreSQL major): it hands the command a working superuser URL,
passes the command's exit status through, and leaves no cluster behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "_debian_pg.sh"
PG15 = Path("/usr/lib/postgresql/15/bin/postgres")

PROBE = """
import os, sys, psycopg
url = os.environ["DAGQ_TEST_DATABASE_URL"]
with psycopg.connect(url, autocommit=True) as conn:
    print(conn.execute("SELECT current_setting('server_version_num')::int / 10000").fetchone()[0])
    print(conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0])
print(url)
sys.exit(3)
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DAGQ_TEST_DATABASE_URL"}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=300, stdin=subprocess.DEVNULL)


def test_the_command_runs_on_a_postgres_15_cluster_that_is_gone_afterwards() -> None:
    if not PG15.exists():  # a test does not install packages; scripts/test-lowest does
        pytest.skip(f"no {PG15} (scripts/test-lowest installs postgresql-15 as root)")
    done = _run("15", sys.executable, sys.executable, "-c", PROBE)
    assert done.returncode == 3, done.stderr  # the command's own status, not the script's
    major, superuser, url = done.stdout.split()
    assert (major, superuser) == ("15", "True")
    socket_dir = Path(parse_qs(urlsplit(url).query)["host"][0])
    assert socket_dir.name == "run" and socket_dir.parent.name.startswith("dagq-pg15-")
    assert not socket_dir.parent.exists()  # stopped and removed
    assert "tests run on postgres (PostgreSQL) 15." in done.stderr


def test_a_major_that_is_not_a_number_is_refused_before_anything_starts() -> None:
    done = _run("15; rm -rf /", sys.executable, "true")
    assert done.returncode == 2
    assert "must be a number like 15" in done.stderr
