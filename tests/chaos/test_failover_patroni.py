"""Failover under load on a real Patroni cluster (issue 29): etcd + two PostgreSQL 15
nodes in synchronous mode, dagq's API, two worker processes and the sweeper on the
multi-host URL (target_session_attrs=read-write), a client submitting fan-out runs the
whole time. Faults: a planned `patronictl switchover`; kill -9 of the primary's Patroni
and postmaster, then the old primary rejoining as a standby (pg_rewind).

After each, with the same dagq processes throughout: every run the API acknowledged is
terminal and succeeded; no attempt's effect was recorded twice; every succeeded node's
final attempt left its effect; never two writable servers at once; no dagq session
stayed on a server in recovery for more than ~2 s; the dagq sessions never exceeded the
processes' connection budget. The timings are printed (run with -s to see them)."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dagq.runtime.migrate import migrate
from tests.harness.failover import BUDGET, Stack, first_completion_after
from tests.harness.patroni import Node, PatroniCluster, patroni_cluster, unavailable
from tests.harness.procs import wait_for

pytestmark = pytest.mark.failover

_databases = itertools.count()


@pytest.fixture(scope="module")
def cluster() -> Iterator[PatroniCluster]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with patroni_cluster() as started:
        yield started


def _new_stack(cluster: PatroniCluster, tmp: Path, url: str | None = None) -> Stack:
    """The dagq processes on a new database, through `url` (`{database}` filled in;
    default the multi-host URL)."""
    cluster.wait_healthy()
    database = f"dagq_failover_{next(_databases)}"
    leader = cluster.leader()
    assert leader is not None
    with psycopg.connect(leader.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    url = url.format(database=database) if url else cluster.url(database)
    migrate(url)
    return Stack(url, database, lambda: [(n.name, n.url(database)) for n in cluster.nodes],
                 tmp)


@contextlib.contextmanager
def _running(stack: Stack) -> Iterator[Stack]:
    try:
        yield stack
    except BaseException:
        print(stack.fleet.logs())
        raise
    finally:
        stack.close()


@pytest.fixture
def stack(cluster: PatroniCluster, tmp_path: Path) -> Iterator[Stack]:
    with _running(_new_stack(cluster, tmp_path)) as started:
        yield started


@pytest.fixture
def proxied(cluster: PatroniCluster, tmp_path: Path) -> Iterator[Stack]:
    """The stack through HAProxy (examples/deploy/haproxy.cfg): one address, no
    target_session_attrs; HAProxy follows Patroni's GET /primary."""
    proxy = cluster.start_haproxy() if cluster.haproxy is None else cluster.haproxy_url
    cluster.haproxy_url = proxy
    with _running(_new_stack(cluster, tmp_path, proxy)) as started:
        yield started


def _other(cluster: PatroniCluster, node: Node) -> Node:
    return next(n for n in cluster.nodes if n is not node)


def timings(what: str, stack: Stack, t0: float, new_leader: str | None) -> dict[str, float]:
    """Seconds from the fault at t0 to: the (new) primary accepting writes (polled), the
    first submit accepted after the longest pause in acceptances (the outage as the
    client saw it), the first node completed after that."""
    writable = stack.monitor.first_writable_after(t0, new_leader)
    times = sorted(s.accepted for s in stack.submitter.accepted if s.accepted > t0 - 1)
    gaps = [(b - a, b) for a, b in itertools.pairwise(times)]
    longest, first_submit = max(gaps, default=(0.0, None))
    first_done = first_completion_after(stack.url, writable or t0)
    found = {name: round(t - t0, 1) for name, t in (
        ("writable", writable), ("first_accepted_submit", first_submit),
        ("first_new_completion", first_done)) if t is not None}
    found["longest_submit_pause"] = round(longest, 1)
    print(f"\n{what}: {found}; failed submit attempts: {len(stack.submitter.failures)}")
    return found


def _report(what: str, stack: Stack) -> dict[str, int]:
    report = stack.finish()
    print(f"{what} invariants: {report}, most sessions {stack.monitor.most_connections()}"
          f" of {BUDGET}, longest on a replica {stack.monitor.longest_on_a_replica_s():.1f}s")
    return report


def _switchover_under_load(cluster: PatroniCluster, stack: Stack, what: str) -> None:
    """A planned `patronictl switchover` while the client submits: nothing is lost and
    the candidate takes writes within 30 s."""
    stack.start_load()
    stack.run_until(60, 60)
    leader = cluster.leader()
    assert leader is not None
    candidate = _other(cluster, leader)
    t0 = time.time()
    result = cluster.switchover(leader, candidate)
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(lambda: cluster.writable() == [candidate.name], 60, "the candidate to lead")
    stack.more()
    cluster.wait_healthy()
    found = timings(what, stack, t0, candidate.name)
    stack.assert_invariants(_report(what, stack))
    assert found["writable"] < 30, found


def test_a_switchover_under_load_loses_nothing(cluster: PatroniCluster, stack: Stack) -> None:
    _switchover_under_load(cluster, stack, "switchover")


def test_killing_the_primary_under_load_then_rejoining_loses_nothing(
        cluster: PatroniCluster, stack: Stack) -> None:
    stack.start_load()
    stack.run_until(60, 60)
    leader = cluster.leader()
    assert leader is not None
    survivor = _other(cluster, leader)
    t0 = time.time()
    cluster.kill(leader)  # kill -9 of its Patroni and its postmaster
    wait_for(lambda: cluster.writable() == [survivor.name], 90, "the standby to take over")
    stack.more()
    found = timings("kill -9 of the primary", stack, t0, survivor.name)
    cluster.start_node(leader)  # the old primary rejoins (pg_rewind) as the sync standby
    cluster.wait_healthy(120)
    assert cluster.writable() == [survivor.name]
    stack.more()
    stack.assert_invariants(_report("kill -9 and rejoin", stack))
    assert found["writable"] < 60 and found["first_accepted_submit"] < 75, found


def test_a_switchover_through_haproxy_loses_nothing(
        cluster: PatroniCluster, proxied: Stack) -> None:
    _switchover_under_load(cluster, proxied, "switchover through HAProxy")


def test_a_proxy_that_routes_to_the_standby_traps_no_session(
        cluster: PatroniCluster, proxied: Stack) -> None:
    """The read-only trap, for real: for 8 s HAProxy runs without its health checks and
    spreads the sessions dagq opens again (the restart cut them all) over both servers,
    the standby too. dagq drops each one on the standby (a pool keeps none; a write
    that met one is done again on another) and nothing is lost."""
    stack = proxied
    stack.start_load()
    stack.run_until(60, 60)
    port = int(stack.url.rsplit(":", 1)[1].split("/")[0])
    t0 = time.time()
    cluster.restart_haproxy(port, checked=False)
    time.sleep(8)
    cluster.restart_haproxy(port)
    stack.more()
    timings("HAProxy without checks for 8 s", stack, t0, None)
    on_standby = {pid for s in stack.monitor.samples for pid in s.on_replicas}
    print(f"dagq sessions seen on the standby: {len(on_standby)}")
    stack.assert_invariants(_report("HAProxy without checks", stack))
