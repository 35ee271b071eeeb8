"""A real Patroni cluster for the failover tests: etcd and two Patroni nodes running
Debian's PostgreSQL 15 (synchronous mode, pg_rewind), on 127.0.0.1 ports in a temporary
directory, owned by a throwaway OS user, and always torn down (by the test; by its
death signal if the test process is killed; else swept by the next run).

The nodes' configuration is examples/deploy/patroni.yml with only the names, addresses,
paths, secrets and timings changed, so the example a reader copies is the one tested.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import yaml

from dagq.runtime.embedded_pg import ensure_system_user
from dagq.runtime.procs import die_with_parent
from tests.harness.procs import ROOT, free_port, wait_for

PG_BIN = Path("/usr/lib/postgresql/15/bin")
EXAMPLE = ROOT / "examples" / "deploy" / "patroni.yml"
HAPROXY_EXAMPLE = ROOT / "examples" / "deploy" / "haproxy.cfg"
OS_USER = "dagq_failover"
PASSWORD = "failover-test"
# Short timings: a dead leader's key expires after TTL s (loop_wait + 2 * retry_timeout
# must not exceed it).
TTL_S, LOOP_WAIT_S, RETRY_TIMEOUT_S = 10, 2, 4


def claim_temp_dir(prefix: str, user: pwd.struct_passwd) -> tuple[Path, int]:
    """A new temporary directory for servers run as `user`, and an open descriptor that
    holds an exclusive lock on its owner.lock for as long as this test process lives.
    First, directories of earlier runs that were killed outright (their lock free) are
    cleared: their processes killed, the directory removed."""
    for stale in Path("/tmp").glob("dagq-patroni-*"):
        _sweep(stale)
    for stale in Path("/tmp").glob("dagq-lonepg-*"):
        _sweep(stale)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    fd = os.open(tmp / "owner.lock", os.O_CREAT | os.O_WRONLY, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.chown(tmp, user.pw_uid, user.pw_gid)
    return tmp, fd


def _sweep(stale: Path) -> None:
    lock = stale / "owner.lock"
    if stale.is_symlink() or not stale.is_dir() or lock.is_symlink() or not lock.exists():
        return
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # a live test holds it
    finally:
        os.close(fd)
    for pid in _processes_in(stale):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(stale, ignore_errors=True)


def _processes_in(directory: Path) -> list[int]:
    """Processes whose working directory is inside `directory` (servers and tools
    started there; a postmaster's is its data directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if Path(os.readlink(proc / "cwd")).is_relative_to(directory):
                    found.append(int(proc.name))
    return found


def unavailable() -> str | None:
    """Why the cluster cannot run here (a skip reason), or None."""
    if os.geteuid() != 0:
        return "the Patroni tests run as root (they start servers as a throwaway OS user)"
    for tool in ("patroni", "patronictl", "etcd"):
        if shutil.which(tool) is None:
            return (f"no {tool} (Debian packages patroni and etcd-server; scripts/test "
                    "installs them)")
    if not (PG_BIN / "postgres").exists():
        return f"no {PG_BIN}/postgres (Debian package postgresql-15)"
    return None


@dataclass
class Node:
    name: str
    pg_port: int
    api_port: int
    home: Path
    proc: subprocess.Popen[bytes] | None = None
    log_files: list[Path] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def config(self) -> Path:
        return self.home / "patroni.yml"

    def url(self, database: str = "postgres") -> str:
        return (f"postgresql://postgres:{PASSWORD}@127.0.0.1:{self.pg_port}/{database}"
                "?connect_timeout=2")

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def role(self) -> str | None:
        """'primary' (writable), 'replica', or None (down), asked of the server itself."""
        return self.role_at(self.url())

    @staticmethod
    def role_at(url: str) -> str | None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        except psycopg.Error:
            return None
        return "replica" if row and row[0] else "primary"


class PatroniCluster:
    """etcd + two Patroni nodes. `start()` returns once one node leads and the other
    streams from it as the synchronous standby; `close()` stops everything."""

    def __init__(self, scope: str = "dagq") -> None:
        self.scope = scope
        self.user = ensure_system_user(OS_USER)
        self.tmp, self._lock = claim_temp_dir("dagq-patroni-", self.user)
        self.etcd_port, self.etcd_peer = free_port(), free_port()
        self.etcd: subprocess.Popen[bytes] | None = None
        self.haproxy: subprocess.Popen[bytes] | None = None
        self.haproxy_url = ""
        self.nodes = [self._node(f"pg{i}") for i in range(2)]

    def _node(self, name: str) -> Node:
        home = self.tmp / name
        home.mkdir()
        os.chown(home, self.user.pw_uid, self.user.pw_gid)
        return Node(name, free_port(), free_port(), home)

    # -- processes ---------------------------------------------------------------------

    def _spawn(self, cmd: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log_path = self.tmp / f"{log_name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.tmp),
               "LANG": "C.UTF-8"}
        # die_with_parent: SIGTERM (Patroni then stops its PostgreSQL) should this test
        # process die, even by SIGKILL; what still outlives it the next run sweeps.
        return subprocess.Popen(cmd, cwd=self.tmp, env=env, stdout=log,
                                stderr=subprocess.STDOUT, user=self.user.pw_uid,
                                group=self.user.pw_gid, extra_groups=[],
                                start_new_session=True, preexec_fn=die_with_parent)

    def start(self, timeout: float = 90) -> PatroniCluster:
        etcd_dir = self.tmp / "etcd"
        self.etcd = self._spawn([
            "etcd", "--name", "etcd0", "--data-dir", str(etcd_dir),
            "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{self.etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.etcd_peer}",
            "--initial-cluster", f"etcd0=http://127.0.0.1:{self.etcd_peer}",
        ], "etcd")
        wait_for(lambda: self._http(f"http://127.0.0.1:{self.etcd_port}/health") is not None,
                 30, "etcd to answer")
        for node in self.nodes:
            self._write_config(node)
        self.start_node(self.nodes[0])
        wait_for(lambda: self.nodes[0].role() == "primary", timeout, "the first node to lead")
        self.start_node(self.nodes[1])
        self.wait_healthy(timeout)
        return self

    def _write_config(self, node: Node) -> None:
        config = yaml.safe_load(EXAMPLE.read_text())
        config["scope"], config["name"] = self.scope, node.name
        config["restapi"] = {"listen": f"127.0.0.1:{node.api_port}",
                             "connect_address": f"127.0.0.1:{node.api_port}"}
        config["etcd3"] = {"hosts": f"127.0.0.1:{self.etcd_port}"}
        config["bootstrap"]["dcs"].update(ttl=TTL_S, loop_wait=LOOP_WAIT_S,
                                          retry_timeout=RETRY_TIMEOUT_S)
        config["bootstrap"]["pg_hba"] = [
            "local all all trust", "host replication replicator 127.0.0.1/32 trust",
            "host all all 127.0.0.1/32 trust"]
        pg = config["postgresql"]
        pg.update(listen=f"127.0.0.1:{node.pg_port}",
                  connect_address=f"127.0.0.1:{node.pg_port}", data_dir=str(node.data_dir),
                  bin_dir=str(PG_BIN), pgpass=str(node.home / "pgpass"))
        for role in pg["authentication"].values():
            role["password"] = PASSWORD
        pg["parameters"] = {"unix_socket_directories": str(node.home)}
        node.config.write_text(yaml.safe_dump(config))
        os.chown(node.config, self.user.pw_uid, self.user.pw_gid)

    def start_node(self, node: Node) -> None:
        node.proc = self._spawn(["patroni", str(node.config)], f"patroni-{node.name}")

    def wait_healthy(self, timeout: float = 90) -> None:
        """One leader, and the other node a streaming synchronous standby."""
        def healthy() -> bool:
            members = self.members()
            roles = sorted(m.get("role", "") for m in members)
            return (len(members) == 2 and roles == ["leader", "sync_standby"]
                    and all(m.get("state") in ("running", "streaming") for m in members))
        wait_for(healthy, timeout, f"a healthy cluster ({self.members()})")

    # -- state -------------------------------------------------------------------------

    @staticmethod
    def _http(url: str) -> bytes | None:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return reply.read()
        except (OSError, ValueError):
            return None

    def members(self) -> list[dict]:
        for node in self.nodes:
            body = self._http(f"http://127.0.0.1:{node.api_port}/cluster")
            if body:
                return json.loads(body).get("members", [])
        return []

    def leader(self) -> Node | None:
        names = [m["name"] for m in self.members() if m.get("role") == "leader"]
        return next((n for n in self.nodes if n.name in names), None)

    def writable(self) -> list[str]:
        """The nodes whose server accepts writes right now, asked of each server."""
        return [n.name for n in self.nodes if n.role() == "primary"]

    def url(self, database: str) -> str:
        """dagq's multi-host URL: whichever node is writable."""
        hosts = ",".join(f"127.0.0.1:{n.pg_port}" for n in self.nodes)
        return (f"postgresql://postgres:{PASSWORD}@{hosts}/{database}"
                "?target_session_attrs=read-write")

    # -- faults ------------------------------------------------------------------------

    def kill(self, node: Node) -> None:
        """kill -9 of the node's Patroni and of its postmaster (a host dying)."""
        pid = node.postmaster_pid()
        if node.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.proc.pid, signal.SIGKILL)
            node.proc.wait()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def switchover(self, leader: Node, candidate: Node) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["patronictl", "-c", str(leader.config), "switchover", "--leader", leader.name,
             "--candidate", candidate.name, "--force"],
            capture_output=True, text=True, timeout=60, check=False,
            user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[],
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(self.tmp)}, cwd=self.tmp)

    def start_haproxy(self) -> str:
        """HAProxy from examples/deploy/haproxy.cfg in front of the nodes; returns its
        URL for `database` to fill in (`{database}`)."""
        port = free_port()
        lines = []
        for line in HAPROXY_EXAMPLE.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("bind "):
                line = f"    bind 127.0.0.1:{port}"
            elif stripped.startswith("server "):
                if stripped.startswith("server db1 "):
                    lines += [f"    server {n.name} 127.0.0.1:{n.pg_port} maxconn 500 check"
                              f" port {n.api_port}" for n in self.nodes]
                continue
            lines.append(line)
        (self.tmp / "haproxy.cfg").write_text("\n".join(lines) + "\n")
        self.restart_haproxy(port)
        url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/{{database}}"
        # Until its first checks, HAProxy takes every server for up (a standby too).
        time.sleep(3)
        probe = url.format(database="postgres") + "?connect_timeout=2"
        wait_for(lambda: all(Node.role_at(probe) == "primary" for _ in range(5)), 30,
                 "HAProxy to route to the primary only")
        return url

    def restart_haproxy(self, port: int, *, checked: bool = True) -> None:
        """(Re)start HAProxy, cutting every session through it. `checked=False`: without
        its health checks, so it spreads new sessions over both servers, the standby
        too (a proxy or DNS name that does not follow the primary)."""
        if self.haproxy is not None:
            self.haproxy.kill()
            self.haproxy.wait()
        config = self.tmp / "haproxy.cfg"
        if not checked:
            blind = self.tmp / "haproxy-unchecked.cfg"
            blind.write_text("".join(
                line.replace(" check port", " port").replace("on-marked-down", "#") + "\n"
                for line in config.read_text().splitlines()
                if "httpchk" not in line and "http-check" not in line)
                + "    balance roundrobin\n")
            config = blind
        self.haproxy = self._spawn(["haproxy", "-db", "-f", str(config)], "haproxy")
        wait_for(lambda: _listening(port), 30, "HAProxy to listen")

    def logs(self, tail: int = 4000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}"
                         for p in sorted(self.tmp.glob("*.log")))

    # -- teardown ----------------------------------------------------------------------

    def close(self) -> None:
        procs = [n.proc for n in self.nodes if n.proc is not None]
        for proc in procs:  # Patroni stops its postgres on SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for node in self.nodes:  # a postmaster left by a killed Patroni
            pid = node.postmaster_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for proc in (self.etcd, self.haproxy):
            if proc is not None:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.close(self._lock)


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


@contextlib.contextmanager
def patroni_cluster() -> Iterator[PatroniCluster]:
    cluster = PatroniCluster()
    try:
        yield cluster.start()
    except BaseException:
        print(cluster.logs())  # what the cluster said, in the failed test's output
        raise
    finally:
        cluster.close()
