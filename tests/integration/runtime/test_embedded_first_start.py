"""The embedded Postgres on a machine where it never ran: its OS user does not exist yet.

Several processes starting at once (the test suite's xdist workers, `dagq up`'s first
start beside a CLI command) used to race creating that user, and one of them ran initdb
as a uid that no longer existed. Each test here uses a fresh OS user name
(DAGQ_EMBEDDED_PG_USER) so it proves the first start on any machine, then removes it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the embedded server runs as a separate OS user only as root")

# Each process waits for the "go" file, so the four starts begin within a millisecond.
START_ONE = """
import os, sys, time
from pathlib import Path
from dagq.runtime.embedded_pg import EmbeddedPostgres
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
server = EmbeddedPostgres(Path(sys.argv[1]), database=sys.argv[3])
url = server.start()
import psycopg
with psycopg.connect(url) as conn:
    pid = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
if len(sys.argv) > 4:  # stay registered until told to leave
    while not Path(sys.argv[4]).exists():
        time.sleep(0.01)
server.release()
print("started", pid)
"""


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """Our own directory, not pytest's: any pytest session that starts meanwhile (a
    second suite on the machine) resets /tmp/pytest-of-root to mode 0700, and the
    servers, which run as another OS user, could then no longer reach their files."""
    path = Path(tempfile.mkdtemp(prefix="dagq-first-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fresh_user() -> Iterator[str]:
    name = f"dagq_t{uuid.uuid4().hex[:12]}"
    with pytest.raises(KeyError):
        pwd.getpwnam(name)
    yield name
    # A server a failed start left running would keep the user from being removed.
    subprocess.run(["pkill", "-KILL", "-u", name], check=False, capture_output=True)
    time.sleep(0.2)
    subprocess.run(["userdel", name], check=False, capture_output=True)
    subprocess.run(["groupdel", name], check=False, capture_output=True)


def test_four_first_starts_at_once_all_start(tmp_path: Path, fresh_user: str) -> None:
    go = tmp_path / "go"
    env = {**os.environ, "DAGQ_EMBEDDED_PG_USER": fresh_user}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", START_ONE, str(tmp_path / f"pg{i}"), str(go), "postgres"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    time.sleep(1.0)  # let every interpreter reach its wait loop
    go.touch()
    results = [proc.communicate(timeout=180) for proc in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-2000:]
        assert out.startswith("started")
    entry = pwd.getpwnam(fresh_user)  # created once, and still the same user
    for i in range(4):
        assert (tmp_path / f"pg{i}" / "pg").stat().st_uid == entry.pw_uid
    assert pwd.getpwuid(entry.pw_uid).pw_name == fresh_user


def test_four_processes_joining_one_data_dir_share_one_server(
        tmp_path: Path, fresh_user: str) -> None:
    go, leave = tmp_path / "go", tmp_path / "leave"
    env = {**os.environ, "DAGQ_EMBEDDED_PG_USER": fresh_user}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", START_ONE, str(tmp_path / "shared"), str(go), "dagq",
             str(leave)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    time.sleep(1.0)
    go.touch()
    handles = tmp_path / "shared" / "pg.handles.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # every process registered: all four joined
        if handles.exists() and len(handles.read_text().strip("[]").split(",")) == 4:
            break
        time.sleep(0.05)
    leave.touch()
    results = [proc.communicate(timeout=180) for proc in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-2000:]
    started_at = {out.split(" ", 1)[1].strip() for out, _ in results}
    assert len(started_at) == 1  # one server, started once, shared by all four
    from dagq.runtime.embedded_pg import EmbeddedPostgres

    assert EmbeddedPostgres(tmp_path / "shared", system_user=fresh_user).status() is None


def test_a_user_made_again_with_a_new_uid_still_owns_its_data(
        tmp_path: Path, fresh_user: str) -> None:
    from dagq.runtime.embedded_pg import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path / "db", database="postgres", system_user=fresh_user)
    server.start()
    server.release()
    old_uid = pwd.getpwnam(fresh_user).pw_uid
    subprocess.run(["userdel", fresh_user], check=True)
    subprocess.run(["groupdel", fresh_user], check=False, capture_output=True)
    # Take the old uid, so the new user cannot get it back.
    holder = f"dagq_h{uuid.uuid4().hex[:12]}"
    subprocess.run(["useradd", "--system", "--no-create-home", "-u", str(old_uid), holder],
                   check=True)
    try:
        again = EmbeddedPostgres(tmp_path / "db", database="postgres", system_user=fresh_user)
        again.start()
        again.release()
        assert pwd.getpwnam(fresh_user).pw_uid != old_uid
        assert (tmp_path / "db" / "pg").stat().st_uid == pwd.getpwnam(fresh_user).pw_uid
    finally:
        subprocess.run(["userdel", holder], check=False, capture_output=True)
        subprocess.run(["groupdel", holder], check=False, capture_output=True)


def test_an_invalid_user_name_is_refused_before_anything_runs(tmp_path: Path) -> None:
    from dagq.errors import EmbeddedPostgresError
    from dagq.runtime.embedded_pg import EmbeddedPostgres

    with pytest.raises(EmbeddedPostgresError, match="invalid OS user name"):
        EmbeddedPostgres(tmp_path / "db", system_user="root; rm -rf /")
    assert not (tmp_path / "db").exists()
