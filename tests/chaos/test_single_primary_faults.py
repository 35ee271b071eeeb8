"""Faults of one PostgreSQL (issue 29, "single primary faults"), under load: the LISTEN
backends terminated; the workers' backends terminated while they hold leases; the
server restarted with `-m fast` and with `-m immediate` (a crash). Every dagq process
recovers by itself (the same processes throughout), every acknowledged run succeeds, no
attempt's effect is recorded twice, and the LISTEN connections come back (re-LISTEN).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dagq.runtime.migrate import migrate
from tests.harness.failover import Stack
from tests.harness.lone_pg import Standalone, standalone
from tests.harness.patroni import unavailable
from tests.harness.procs import wait_for

pytestmark = pytest.mark.failover

_databases = itertools.count()
# The API's LISTEN dagq_events and each worker's LISTEN dagq_queued + dagq_cancelled.
LISTENERS = 1 + 2


@pytest.fixture(scope="module")
def server() -> Iterator[Standalone]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with standalone() as started:
        yield started


@pytest.fixture
def stack(server: Standalone, tmp_path: Path) -> Iterator[Stack]:
    database = f"dagq_single_{next(_databases)}"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    url = server.url(database)
    migrate(url)
    # Nodes that run a while, so that faults land on held leases.
    started = Stack(url, database, lambda: [("pg", url)], tmp_path, sleep_s=0.3)
    try:
        yield started
    except BaseException:
        print(started.fleet.logs())
        raise
    finally:
        started.close()


def _backends(url: str, listening: bool) -> list[int]:
    """The dagq sessions of the database: those that LISTEN, or the others."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, query FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchall()
    return [pid for pid, query in rows if query.startswith("LISTEN") == listening]


def _terminate(url: str, pids: list[int]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))


def _finish(stack: Stack, what: str) -> None:
    report = stack.finish()
    print(f"\n{what}: {report}")
    stack.assert_invariants(report)


def test_terminated_listen_backends_listen_again(stack: Stack) -> None:
    stack.start_load()
    stack.run_until(20, 60)
    wait_for(lambda: len(_backends(stack.url, True)) == LISTENERS, 30, "every LISTEN")
    before = set(_backends(stack.url, True))
    _terminate(stack.url, sorted(before))
    t0 = time.monotonic()
    wait_for(lambda: len(set(_backends(stack.url, True)) - before) == LISTENERS, 15,
             "every LISTEN connection to come back")
    print(f"\nLISTEN back after {time.monotonic() - t0:.1f}s")
    stack.more(40, 60)
    _finish(stack, "LISTEN backends terminated")


def test_workers_backends_terminated_mid_lease(stack: Stack) -> None:
    stack.start_load()
    stack.run_until(20, 60)
    for _ in range(3):  # a few times, each while nodes are running
        with psycopg.connect(stack.url, autocommit=True) as conn:
            wait_for(lambda c=conn: c.execute(
                "SELECT count(*) FROM dagq.node_tasks WHERE status = 'running'"
            ).fetchone()[0] > 0, 30, "nodes running")
        _terminate(stack.url, _backends(stack.url, False))
        stack.more(15, 60)
    _finish(stack, "every non-LISTEN backend terminated 3 times")


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_restart_under_load(server: Standalone, stack: Stack, mode: str) -> None:
    stack.start_load()
    stack.run_until(30, 60)
    t0 = time.time()
    server.restart(mode)
    up = time.time()
    stack.more(40, 90)
    after = [s.accepted for s in stack.submitter.accepted if s.sent > up]
    print(f"\nrestart -m {mode}: down {up - t0:.1f}s, first submit sent after it accepted"
          f" {min(after, default=up) - up:.1f}s later")
    wait_for(lambda: len(_backends(stack.url, True)) == LISTENERS, 30, "every LISTEN again")
    _finish(stack, f"restart -m {mode}")
