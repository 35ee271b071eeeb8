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

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from dagq.runtime.migrate import migrate
from tests.harness.failover import (
    NODES_PER_RUN,
    WORKFLOW,
    Monitor,
    Submitter,
    effect_report,
    first_completion_after,
    wait_all_terminal,
)
from tests.harness.patroni import Node, PatroniCluster, patroni_cluster, unavailable
from tests.harness.procs import WorkerFleet, free_port, wait_for

pytestmark = pytest.mark.failover

WORKERS, THREADS, API_POOL = 2, 4, 6
# Server sessions the processes may hold at most: each worker's pool (threads + 4) and
# its LISTEN connection, the API's pool and its LISTEN connection, the sweeper's pool of
# 4 and its own session for the leader lock.
BUDGET = WORKERS * (THREADS + 4 + 1) + (API_POOL + 1) + (4 + 1)
_databases = itertools.count()


@pytest.fixture(scope="module")
def cluster() -> Iterator[PatroniCluster]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with patroni_cluster() as started:
        yield started


class Stack:
    def __init__(self, cluster: PatroniCluster, tmp: Path) -> None:
        self.cluster = cluster
        self.database = f"dagq_failover_{next(_databases)}"
        leader = cluster.leader()
        assert leader is not None
        with psycopg.connect(leader.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.database}")
        self.url = cluster.url(self.database)
        migrate(self.url)
        self.effects = str(tmp / "effects.txt")
        self.fleet = WorkerFleet(self.url, tmp)
        env = {"DAGQ_ACTOR_MODULES": "tests.harness.effects", "DAGQ_TEST_EFFECTS": self.effects,
               "DAGQ_POOL_SIZE": str(API_POOL), "DAGQ_LOG_LEVEL": "INFO"}
        for _ in range(WORKERS):
            self.fleet.start(threads=THREADS, **env)
        self.fleet.start_sweeper(**env)
        port = free_port()
        self.fleet.start_api(port, **env)
        self.base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _status(f"{self.base}/readyz") == 200, 60, "the API to be ready")
        wait_for(lambda: httpx.post(f"{self.base}/v1/workflows", json=WORKFLOW,
                                    timeout=10).status_code in (200, 201),
                 60, "the workers to register failover.effect")
        self.monitor = Monitor(self._servers, self.database)
        self.submitter = Submitter(self.base)

    def _servers(self) -> list[tuple[str, str]]:
        return [(n.name, n.url(self.database)) for n in self.cluster.nodes]

    def run_until(self, accepted: int, timeout: float) -> None:
        wait_for(lambda: len(self.submitter.accepted) >= accepted, timeout,
                 f"{accepted} accepted submits (failures: {self.submitter.failures[-3:]})")

    def finish(self) -> dict[str, int]:
        """Stop the load, wait for every acknowledged run, and count the invariants."""
        self.submitter.stop()
        run_ids = [s.run_id for s in self.submitter.accepted]
        statuses = wait_all_terminal(self.url, run_ids)
        self.monitor.stop()
        report = effect_report(self.url, self.effects, run_ids)
        report["runs"] = len(run_ids)
        report["succeeded_runs"] = sum(statuses.get(r) == "succeeded" for r in run_ids)
        return report


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


@pytest.fixture
def stack(cluster: PatroniCluster, tmp_path: Path) -> Iterator[Stack]:
    cluster.wait_healthy()
    started = Stack(cluster, tmp_path)
    try:
        yield started
    except BaseException:
        print(started.fleet.logs())
        raise
    finally:
        started.submitter.stopping.set()
        started.monitor.stopping.set()
        started.fleet.stop_all()


def _assert_invariants(stack: Stack, report: dict[str, int]) -> None:
    logs = stack.fleet.logs
    assert report["succeeded_runs"] == report["runs"], (report, logs())
    assert report["succeeded_nodes"] == report["runs"] * NODES_PER_RUN, report
    assert report["twice"] == 0, report
    assert report["without_effect"] == 0, report
    assert stack.monitor.most_writable() == 1, "two writable servers at once"
    assert stack.monitor.longest_on_a_replica_s() <= 2.5, stack.monitor.longest_on_a_replica_s()
    assert stack.monitor.most_connections() <= BUDGET, (stack.monitor.most_connections(), BUDGET)
    for proc in stack.fleet.procs:  # the same processes throughout
        assert proc.poll() is None, logs()


def _other(cluster: PatroniCluster, node: Node) -> Node:
    return next(n for n in cluster.nodes if n is not node)


def _timings(what: str, stack: Stack, t0: float, new_leader: Node) -> dict[str, float]:
    """Seconds from the fault at t0 to: the new leader accepting writes (polled), the
    first submit accepted after the longest pause in acceptances (the outage as the
    client saw it), the first node completed on the new leader."""
    writable = stack.monitor.first_writable_after(t0, new_leader.name)
    times = sorted(s.accepted for s in stack.submitter.accepted if s.accepted > t0 - 1)
    gaps = [(b - a, b) for a, b in itertools.pairwise(times)]
    longest, first_submit = max(gaps, default=(0.0, None))
    first_done = first_completion_after(stack.url, writable or t0)
    timings = {name: round(t - t0, 1) for name, t in (
        ("writable", writable), ("first_accepted_submit", first_submit),
        ("first_new_completion", first_done)) if t is not None}
    timings["longest_submit_pause"] = round(longest, 1)
    print(f"\n{what}: {timings}; failed submit attempts: {len(stack.submitter.failures)}")
    return timings


def test_a_switchover_under_load_loses_nothing(cluster: PatroniCluster, stack: Stack) -> None:
    stack.monitor.start()
    stack.submitter.start()
    stack.run_until(60, 60)
    leader = cluster.leader()
    assert leader is not None
    candidate = _other(cluster, leader)
    t0 = time.time()
    result = cluster.switchover(leader, candidate)
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(lambda: cluster.writable() == [candidate.name], 60, "the candidate to lead")
    stack.run_until(len(stack.submitter.accepted) + 60, 90)
    cluster.wait_healthy()
    report = stack.finish()
    timings = _timings("switchover", stack, t0, candidate)
    print(f"switchover invariants: {report}, most sessions {stack.monitor.most_connections()}"
          f" of {BUDGET}, longest on a replica {stack.monitor.longest_on_a_replica_s():.1f}s")
    _assert_invariants(stack, report)
    assert timings["writable"] < 30, timings


def test_killing_the_primary_under_load_then_rejoining_loses_nothing(
        cluster: PatroniCluster, stack: Stack) -> None:
    stack.monitor.start()
    stack.submitter.start()
    stack.run_until(60, 60)
    leader = cluster.leader()
    assert leader is not None
    survivor = _other(cluster, leader)
    t0 = time.time()
    cluster.kill(leader)  # kill -9 of its Patroni and its postmaster
    wait_for(lambda: cluster.writable() == [survivor.name], 90, "the standby to take over")
    stack.run_until(len(stack.submitter.accepted) + 60, 90)
    timings = _timings("kill -9 of the primary", stack, t0, survivor)
    cluster.start_node(leader)  # the old primary rejoins (pg_rewind) as the sync standby
    cluster.wait_healthy(120)
    assert cluster.writable() == [survivor.name]
    stack.run_until(len(stack.submitter.accepted) + 60, 90)
    report = stack.finish()
    print(f"kill invariants: {report}, most sessions {stack.monitor.most_connections()}"
          f" of {BUDGET}, longest on a replica {stack.monitor.longest_on_a_replica_s():.1f}s")
    _assert_invariants(stack, report)
    assert timings["writable"] < 60 and timings["first_accepted_submit"] < 75, timings
