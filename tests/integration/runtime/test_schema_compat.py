"""Only the migrators migrate; every other process checks the schema at start (issue 27,
point 3): behind the code -> one line naming `dagq db migrate`; ahead of it -> it runs
iff the newer migrations declared themselves compatible with it (their
`-- dagq:compatible-with N` header, recorded in dagq.schema_migrations)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest

from dagq.runtime import migrate as migrate_module
from dagq.runtime.migrate import SchemaMismatch, check_schema, migrate, read_schema_state
from dagq.runtime.sqlfiles import Migration, migrations
from tests.harness.pg import empty_database
from tests.harness.procs import ROOT, free_port

LATEST = max(m.version for m in migrations())


def dagq(*args: str, url: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAGQ_DATABASE_URL": url, "DAGQ_LOG_LEVEL": "WARNING",
           "PYTHONPATH": str(ROOT), "DAGQ_AUTH": "off"}
    return subprocess.run(
        [sys.executable, "-c", "from dagq.cli import main; raise SystemExit(main())", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def empty_url(pg_server) -> Iterator[str]:
    """A database with no dagq schema at all (not made from the migrated template)."""
    with empty_database(pg_server, f"dagq_test_empty_{os.getpid()}") as url:
        yield url


def _has_dagq_schema(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regnamespace('dagq') IS NOT NULL").fetchone()[0]


@pytest.mark.parametrize("command", [
    ["runs"], ["keys", "create", "--tenant", "t"], ["tenants", "list"], ["sweeper"],
    ["worker", "--processes", "1"], ["api", "--port", "PORT"],
])
def test_no_command_but_the_migrators_migrates(empty_url: str, command: list[str]) -> None:
    command = [str(free_port()) if part == "PORT" else part for part in command]
    done = dagq(*command, url=empty_url)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        "dagq: error: the database has no dagq schema yet: run `dagq db migrate` first"]
    assert not _has_dagq_schema(empty_url)  # nothing written


def test_db_status_lists_pending_then_db_migrate_applies_them(empty_url: str) -> None:
    before = dagq("db", "status", url=empty_url)
    assert before.returncode == 1
    lines = before.stdout.strip().splitlines()
    assert lines[0].startswith("001_schema") and lines[0].endswith(" pending")
    assert len(lines) == len(migrations()) + 1
    assert lines[-1] == "schema: the database has no dagq schema yet: run `dagq db migrate` first"
    assert not _has_dagq_schema(empty_url)  # status changes nothing

    migrated = dagq("db", "migrate", url=empty_url)
    assert migrated.returncode == 0, migrated.stderr
    after = dagq("db", "status", url=empty_url)
    assert after.returncode == 0, after.stderr
    lines = after.stdout.strip().splitlines()
    assert all(" applied " in line for line in lines[:-1]) and len(lines) == len(migrations()) + 1
    assert lines[-1] == f"schema: current (this dagq is at migration {LATEST:03d})"
    assert dagq("runs", url=empty_url).returncode == 0


def test_a_schema_behind_the_code_names_the_command_to_run(db_url: str, sql) -> None:
    sql.execute("DELETE FROM dagq.schema_migrations WHERE version = %s", (LATEST,))
    done = dagq("runs", url=db_url)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"dagq: error: the database schema is behind this dagq (pending migrations "
        f"{LATEST:03d}): run `dagq db migrate` first, then start the processes")


def newer_code(monkeypatch: pytest.MonkeyPatch, *extra: Migration) -> None:
    """Make this process a newer dagq: its migrations are ours plus `extra`."""
    monkeypatch.setattr(migrate_module, "migrations", lambda: [*migrations(), *extra])


def test_an_older_dagq_runs_on_a_schema_declared_compatible_only(
    db_url: str, sql, monkeypatch: pytest.MonkeyPatch,
) -> None:
    expand = Migration(LATEST + 1, "expand", "CREATE TABLE dagq.expand_demo (x int)",
                       compatible_with=LATEST)
    with monkeypatch.context() as newer:
        newer_code(newer, expand)
        assert migrate(db_url) == [LATEST + 1]  # the newer dagq's `dagq db migrate`
    row = sql.execute("SELECT compatible_with FROM dagq.schema_migrations WHERE version = %s",
                      (LATEST + 1,)).fetchone()
    assert row["compatible_with"] == LATEST  # recorded for older binaries to read
    state = check_schema(db_url)  # this (older) dagq may run: expand only
    assert [a.version for a in state.unknown] == [LATEST + 1]
    assert dagq("runs", url=db_url).returncode == 0

    contract = Migration(LATEST + 2, "contract", "DROP TABLE dagq.expand_demo")  # strict
    with monkeypatch.context() as newer:
        newer_code(newer, expand, contract)
        assert migrate(db_url) == [LATEST + 2]
        check_schema(db_url)  # the newer dagq itself runs
    message = (f"the database schema is newer than this dagq (migrations {LATEST + 1:03d}, "
               f"{LATEST + 2:03d} need dagq at migration {LATEST + 2:03d} or later; this one "
               f"is at {LATEST:03d}): run a newer dagq")
    with pytest.raises(SchemaMismatch) as raised:
        check_schema(db_url)
    assert raised.value.message == message
    for command in (["runs"], ["worker", "--processes", "1"], ["db", "migrate"]):
        done = dagq(*command, url=db_url)
        assert (done.returncode, done.stderr.strip()) == (1, f"dagq: error: {message}")


def test_a_migration_recorded_before_the_column_existed_is_strict(db_url: str, sql) -> None:
    """A table made by a dagq before compatible_with (and rows such a dagq wrote) still
    reads; migrating adds the column back."""
    sql.execute("ALTER TABLE dagq.schema_migrations DROP COLUMN compatible_with")
    assert check_schema(db_url).compatible
    sql.execute("INSERT INTO dagq.schema_migrations (version, name) VALUES (%s, 'newer')",
                (LATEST + 1,))
    state = read_schema_state(db_url)
    assert state.needs_code == LATEST + 1 and not state.compatible
    sql.execute("DELETE FROM dagq.schema_migrations WHERE version = %s", (LATEST + 1,))
    assert migrate(db_url) == []
    assert sql.execute("SELECT count(*) AS n FROM information_schema.columns WHERE "
                       "table_schema = 'dagq' AND table_name = 'schema_migrations' AND "
                       "column_name = 'compatible_with'").fetchone()["n"] == 1
