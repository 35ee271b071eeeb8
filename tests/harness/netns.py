"""Hosts simulated honestly (issue 29, point 5): Linux network namespaces on a bridge,
one per "host" (Postgres, the API with the sweeper, two worker hosts), each with its own
address, routing and nftables rules, so a fault on one worker host's link leaves the
others alone. Made and removed by the test, as root; tests skip with the reason
otherwise, or when `ip`/`nft` are missing (./scripts/test installs nftables).

The faults are nftables rules inside a worker host's namespace (its own netfilter
tables): a partition drops both directions, an asymmetric one only what comes back
(the host's packets arrive, the answers do not: half-open TCP), loss drops a share at
random. Latency is a proxy (dagq.bench.delay_proxy): this kernel has no `tc netem`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.harness.lone_pg import Standalone
from tests.harness.patroni import PG_BIN

PREFIX = "dqn"  # namespaces dqn<pid>-<host>, bridge dqn<pid>b: names <= 15 characters


def require_netns() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    for tool in ("ip", "nft", "runuser"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (./scripts/test installs nftables as root)")
    if not (PG_BIN / "postgres").exists():
        pytest.skip(f"PostgreSQL 15 is not installed ({PG_BIN}; ./scripts/test installs it)")


def _run(*argv: str, input_text: str | None = None) -> None:
    done = subprocess.run(argv, input=input_text, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


def _sweep_leftovers() -> None:
    """Namespaces and bridges of earlier test processes that died without removing them."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for name in (line.split()[0] for line in listed.splitlines() if line.strip()):
        owner = name[len(PREFIX):].split("-")[0]
        if name.startswith(PREFIX) and owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    links = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"],
                           capture_output=True, text=True).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip()
        owner = name[len(PREFIX):-1]
        if name.startswith(PREFIX) and owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
            subprocess.run(["ip", "link", "del", name], capture_output=True)


class Network:
    """A bridge (the "switch", 10.X.0.1 in the root namespace, where the test runs) and
    one namespace per host, each with an address on it."""

    def __init__(self, hosts: list[str]) -> None:
        pid = os.getpid()
        self.tag = f"{PREFIX}{pid}"
        self.bridge = f"{self.tag}b"
        self.subnet = f"10.{100 + pid % 150}.{pid // 150 % 250}"
        self.gateway = f"{self.subnet}.1"
        self.hosts = {host: (f"{self.tag}-{host}", f"{self.subnet}.{i + 2}")
                      for i, host in enumerate(hosts)}

    def up(self) -> Network:
        _sweep_leftovers()
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for i, (namespace, address) in enumerate(self.hosts.values()):
            outside, inside = f"{self.tag}v{i}", f"{self.tag}i{i}"
            _run("ip", "netns", "add", namespace)
            _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
            _run("ip", "link", "set", inside, "netns", namespace)
            _run("ip", "link", "set", outside, "master", self.bridge)
            _run("ip", "link", "set", outside, "up")
            for argv in (("link", "set", "lo", "up"),
                         ("addr", "add", f"{address}/24", "dev", inside),
                         ("link", "set", inside, "up")):
                _run("ip", "-n", namespace, *argv)
        return self

    def down(self) -> None:
        for i, (namespace, _) in enumerate(self.hosts.values()):
            # The veth pair at once: a namespace's own links go with it only later (the
            # kernel removes a namespace asynchronously), and the next test reuses names.
            subprocess.run(["ip", "link", "del", f"{self.tag}v{i}"], capture_output=True)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def address(self, host: str) -> str:
        return self.hosts[host][1]

    def wrap(self, host: str) -> list[str]:
        """The command prefix that runs a process on `host`."""
        return ["ip", "netns", "exec", self.hosts[host][0]]

    def rules(self, host: str, *, drop_in: str = "", drop_out: str = "") -> None:
        """Replace `host`'s fault rules: nftables expressions matched (and dropped) on
        what it receives and what it sends, e.g. `ip saddr 10.1.2.3`."""
        lines = ["table inet dagq_fault {"]
        for name, hook, match in (("fault_in", "input", drop_in),
                                  ("fault_out", "output", drop_out)):
            lines += [f"  chain {name} {{", f"    type filter hook {hook} priority 0;",
                      *([f"    {match} drop"] if match else []), "  }"]
        self.heal(host)
        _run(*self.wrap(host), "nft", "-f", "-", input_text="\n".join([*lines, "}", ""]))

    def partition(self, host: str, peer: str) -> None:
        """Nothing passes between `host` and `peer`, either way."""
        peer_address = self.address(peer)
        self.rules(host, drop_in=f"ip saddr {peer_address}",
                   drop_out=f"ip daddr {peer_address}")

    def half_open(self, host: str, peer: str) -> None:
        """`host`'s packets reach `peer`; nothing comes back (half-open TCP)."""
        self.rules(host, drop_in=f"ip saddr {self.address(peer)}")

    def lose(self, host: str, peer: str, percent: int) -> None:
        """`percent` % of the packets between `host` and `peer` lost, each way."""
        peer_address = self.address(peer)
        share = f"numgen random mod 100 < {int(percent)}"
        self.rules(host, drop_in=f"ip saddr {peer_address} {share}",
                   drop_out=f"ip daddr {peer_address} {share}")

    def heal(self, host: str) -> None:
        _run(*self.wrap(host), "nft", "flush", "ruleset")


class NamespacedPostgres(Standalone):
    """Debian's PostgreSQL 15 on `host` of `network`, listening on that host's address."""

    def __init__(self, network: Network, host: str) -> None:
        super().__init__()
        self.network, self.host = network, host

    def start(self) -> NamespacedPostgres:
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                 "--no-sync")
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {self.network.subnet}.0/24 trust\n")
        _run(*self.network.wrap(self.host), "runuser", "-u", self.user.pw_name, "--",
             str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.tmp / "server.log"),
             "-w", "-o", f"-p {self.port} -k {self.tmp} -c listen_addresses="
                         f"{self.network.address(self.host)} -c max_connections=100"
                         " -c jit=off", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return (f"postgresql://postgres@{self.network.address(self.host)}:{self.port}"
                f"/{database}?connect_timeout=2")


@contextlib.contextmanager
def network(hosts: list[str]) -> Iterator[Network]:
    require_netns()
    net = Network(hosts)
    try:
        yield net.up()
    finally:
        net.down()
