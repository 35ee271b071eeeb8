"""Many hosts, simulated honestly (issue 29, point 5): Postgres, the API (with the
sweeper) and two worker hosts in their own network namespaces on a bridge, under load
(fan-out runs whose executor records every attempt's effect), while one worker host's
link to Postgres is cut for 30 s, cut one way only (half-open TCP), loses 5 % of its
packets, or has 5 ms of latency each way.

After each fault: every run the API acknowledged succeeds, no attempt's effect is
recorded twice, every succeeded node's final attempt left its effect, no node ends twice
(no completion accepted from a stale lease), the other worker host worked on throughout,
and the faulted host works again with the same processes (none restarted).

Run alone with `pytest -m netns tests/chaos` (as root; Debian's nftables and
postgresql-15, which ./scripts/test installs). About 1 min a fault.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from dagq.bench.delay_proxy import DelayProxy
from dagq.runtime.migrate import migrate
from tests.harness.effects import effects
from tests.harness.failover import (
    NODES_PER_RUN,
    WORKFLOW,
    Submitter,
    effect_report,
    wait_all_terminal,
)
from tests.harness.netns import NamespacedPostgres, Network, network
from tests.harness.procs import WorkerFleet, free_port, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.netns]

HOSTS = ["pg", "api", "w1", "w2"]
CUT_S = 30


class Hosts:
    """dagq on the namespaces: API and sweeper on `api`, a worker on `w1` and one on
    `w2`, each worker recording its effects in its own file."""

    def __init__(self, net: Network, db_url: str, tmp: Path, *, w1_url: str | None = None):
        self.net, self.url = net, db_url
        self.fleet = WorkerFleet(db_url, tmp)
        self.effects = {host: str(tmp / f"effects-{host}.txt") for host in ("w1", "w2")}
        try:
            self._start(net, tmp, w1_url)
        except BaseException:
            # No fixture's teardown knows of these processes yet: stop them here, or they
            # run on (die_with_parent: until pytest exits) beside the next test.
            self.fleet.stop_all()
            raise

    def _start(self, net: Network, tmp: Path, w1_url: str | None) -> None:
        db_url = self.url
        common = {"DAGQ_ACTOR_MODULES": "tests.harness.effects", "DAGQ_LOG_LEVEL": "INFO",
                  "DAGQ_POOL_SIZE": "6"}
        for host in ("w1", "w2"):
            url = w1_url if host == "w1" and w1_url else db_url
            self.fleet.start(threads=4, wrap=net.wrap(host), DAGQ_DATABASE_URL=url,
                             DAGQ_TEST_EFFECTS=self.effects[host], **common)
        self.fleet.start_sweeper(wrap=net.wrap("api"), DAGQ_TEST_EFFECTS="/dev/null", **common)
        port = free_port()
        self.fleet.start_api(port, host=net.address("api"), wrap=net.wrap("api"),
                             DAGQ_TEST_EFFECTS="/dev/null", **common)
        self.base = f"http://{net.address('api')}:{port}"
        spec = json.loads(json.dumps(WORKFLOW))
        for node in spec["nodes"].values():
            node["params"] = {"sleep_s": 0.02}
        wait_for(lambda: _registered(self.base, spec), 90, "the API and the workers")
        self.submitter = Submitter(self.base)

    def done_by(self, host: str) -> int:
        return len(effects(self.effects[host]))

    def run_until(self, accepted: int, timeout: float = 90) -> None:
        wait_for(lambda: len(self.submitter.accepted) >= accepted, timeout,
                 f"{accepted} accepted submits ({self.submitter.failures[-3:]})")

    def finish(self) -> dict[str, int]:
        self.submitter.stop()
        run_ids = [s.run_id for s in self.submitter.accepted]
        statuses = wait_all_terminal(self.url, run_ids, timeout=180)
        merged = Path(self.effects["w1"]).with_name("effects.txt")
        merged.write_text("".join(Path(p).read_text() if Path(p).exists() else ""
                                  for p in self.effects.values()))
        report = effect_report(self.url, str(merged), run_ids)
        report["runs"] = len(run_ids)
        report["succeeded_runs"] = sum(statuses.get(r) == "succeeded" for r in run_ids)
        return report

    def assert_invariants(self, report: dict[str, int]) -> None:
        logs = self.fleet.logs
        assert report["runs"] > 0
        assert report["succeeded_runs"] == report["runs"], (report, logs())
        assert report["succeeded_nodes"] == report["runs"] * NODES_PER_RUN, report
        assert report["twice"] == 0, report
        assert report["without_effect"] == 0, report
        assert report["nodes_ended_twice"] == 0, report
        for proc in self.fleet.procs:  # the same processes throughout: none restarted
            assert proc.poll() is None, logs()

    def close(self) -> None:
        self.submitter.stopping.set()
        self.fleet.stop_all()


def _registered(base: str, spec: dict) -> bool:
    try:
        return httpx.post(f"{base}/v1/workflows", json=spec, timeout=5).status_code in (200,
                                                                                      201)
    except httpx.HTTPError:
        return False


@pytest.fixture
def net() -> Iterator[Network]:
    with network(HOSTS) as made:
        yield made


@pytest.fixture
def db(net: Network) -> Iterator[str]:
    server = NamespacedPostgres(net, "pg")
    try:
        server.start()
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE dagq")
        migrate(server.url("dagq"))
        yield server.url("dagq")
    except BaseException:
        print(server.logs())
        raise
    finally:
        server.close()


@pytest.fixture
def hosts(net: Network, db: str, tmp_path: Path) -> Iterator[Hosts]:
    stack = Hosts(net, db, tmp_path)
    try:
        yield stack
    finally:
        stack.close()


def _fault_then_heal(hosts: Hosts, fault, seconds: float) -> dict[str, int]:
    """Load; the fault on w1 for `seconds`; heal; more load; the invariants' counts."""
    hosts.submitter.start()
    hosts.run_until(20)
    w2_before = hosts.done_by("w2")
    fault()
    time.sleep(seconds)
    w2_during = hosts.done_by("w2") - w2_before
    hosts.net.heal("w1")
    w1_at_heal = hosts.done_by("w1")
    healed = len(hosts.submitter.accepted)
    hosts.run_until(healed + 60, timeout=120)
    wait_for(lambda: hosts.done_by("w1") > w1_at_heal, 90, "w1 to work again after the heal")
    report = hosts.finish()
    report |= {"w2_during_fault": w2_during, "w1_after_heal": hosts.done_by("w1") - w1_at_heal}
    return report


def test_a_worker_host_cut_off_from_postgres_for_30_s(hosts: Hosts) -> None:
    report = _fault_then_heal(hosts, lambda: hosts.net.partition("w1", "pg"), CUT_S)
    print("partition:", report)
    hosts.assert_invariants(report)
    assert report["w2_during_fault"] > 0, report  # w1's nodes reclaimed and run by w2


def test_a_one_way_cut_leaves_half_open_connections_and_the_host_recovers(
        hosts: Hosts) -> None:
    report = _fault_then_heal(hosts, lambda: hosts.net.half_open("w1", "pg"), CUT_S)
    print("half-open:", report)
    hosts.assert_invariants(report)
    assert report["w2_during_fault"] > 0, report


def test_five_percent_packet_loss_between_a_worker_host_and_postgres(hosts: Hosts) -> None:
    w1_before = hosts.done_by("w1")
    report = _fault_then_heal(hosts, lambda: hosts.net.lose("w1", "pg", 5), 20)
    print("loss:", report)
    hosts.assert_invariants(report)
    assert hosts.done_by("w1") > w1_before


def test_a_worker_host_5_ms_away_each_way(net: Network, db: str, tmp_path: Path) -> None:
    """w1 reaches Postgres through a proxy on the bridge that adds 5 ms each way."""
    params = psycopg.conninfo.conninfo_to_dict(db)
    with DelayProxy((str(params["host"]), int(params["port"])), 0.005,
                    listen=(net.gateway, 0)) as proxy:
        far = psycopg.conninfo.make_conninfo(db, host=net.gateway, port=proxy.port)
        stack = Hosts(net, db, tmp_path, w1_url=far)
        try:
            stack.submitter.start()
            stack.run_until(80, timeout=120)
            report = stack.finish()
            print("5 ms:", report, "w1:", stack.done_by("w1"), "w2:", stack.done_by("w2"))
            stack.assert_invariants(report)
            assert stack.done_by("w1") > 0 and proxy.connections > 0
        finally:
            stack.close()


class _NoNamespaces:
    """A Network's interface with no namespaces (every host is this one): enough to start
    the processes, without root."""

    def wrap(self, host: str) -> list[str]:
        return []

    def address(self, host: str) -> str:
        return "127.0.0.1"


def test_hosts_that_fail_to_start_leave_no_process(tmp_path: Path, monkeypatch) -> None:
    """Not a fault test (no root needed): when the stack cannot come up (here the wait for
    the API fails at once), its workers, sweeper and API are stopped before the error
    reaches the fixture, which never got a stack to close."""
    started: list[WorkerFleet] = []
    real_init = WorkerFleet.__init__

    def recording_init(fleet: WorkerFleet, *args, **kwargs) -> None:
        real_init(fleet, *args, **kwargs)
        started.append(fleet)

    def refuse(*args, **kwargs) -> None:
        raise AssertionError("timed out waiting for the API and the workers")

    monkeypatch.setattr(WorkerFleet, "__init__", recording_init)
    monkeypatch.setattr(f"{__name__}.wait_for", refuse)
    with pytest.raises(AssertionError, match="timed out"):
        Hosts(_NoNamespaces(), "postgresql://nobody@127.0.0.1:1/none", tmp_path)  # type: ignore[arg-type]
    [fleet] = started
    assert len(fleet.procs) == 4
    assert all(proc.poll() is not None for proc in fleet.procs)
