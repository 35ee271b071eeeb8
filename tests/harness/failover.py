"""Load and bookkeeping for the failover tests: an HTTP submitter that retries each
submit under its own event key until the API accepts it (so an acknowledged run is one
the client was told about), a monitor that polls every server for who is writable and
which dagq connections it holds, and the invariants checked once the faults are over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.harness.effects import effects
from tests.harness.procs import WorkerFleet, free_port, wait_for

WORKFLOW = {
    "name": "failover-fan",
    "defaults": {"max_attempts": 10, "backoff": {"initial_s": 0.2, "max_s": 2}},
    "nodes": {
        "start": {"executor": "failover.effect"},
        **{f"b{i}": {"executor": "failover.effect", "depends_on": ["start"]} for i in range(4)},
        "join": {"executor": "failover.effect", "depends_on": [f"b{i}" for i in range(4)]},
    },
}
NODES_PER_RUN = 6


@dataclasses.dataclass
class Submit:
    run_id: str
    sent: float  # wall clock (time.time()) of the attempt that was accepted
    accepted: float
    after_failure: bool  # an earlier attempt of this submit failed (503, refused, ...)


class Submitter(threading.Thread):
    """POSTs runs to the API, one at a time, each retried under its event key until
    accepted (201, or 200 for a key the API already took)."""

    def __init__(self, base: str, *, interval_s: float = 0.05, limit: int = 100_000) -> None:
        super().__init__(name="failover-submitter", daemon=True)
        self.base, self.interval_s, self.limit = base, interval_s, limit
        self.accepted: list[Submit] = []
        self.failures: list[tuple[float, str]] = []  # (wall time, what)
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self.stopping.is_set() and len(self.accepted) < self.limit:
                self._submit(client, f"fo-{uuid.uuid4().hex}")
                self.stopping.wait(self.interval_s)

    def _submit(self, client: httpx.Client, key: str) -> None:
        failed = False
        give_up = time.monotonic() + 120
        while time.monotonic() < give_up:
            sent = time.time()
            try:
                reply = client.post("/v1/runs", json={"workflow": WORKFLOW["name"],
                                                      "event_key": key})
            except httpx.HTTPError as exc:
                what = type(exc).__name__
            else:
                if reply.status_code in (200, 201):
                    self.accepted.append(Submit(reply.json()["run_id"], sent, time.time(),
                                                failed))
                    return
                what = f"{reply.status_code} {reply.text[:100]}"
            failed = True
            self.failures.append((time.time(), what))
            time.sleep(0.2)
        # Unaccepted for two minutes: the client was never told of a run; nothing owed.

    def stop(self) -> None:
        self.stopping.set()
        self.join(150)


@dataclasses.dataclass
class Sample:
    at: float
    writable: list[str]
    on_replicas: set[tuple[str, int]]  # (node, backend pid) of dagq sessions on a replica
    connections: int  # dagq sessions on the writable server(s)


class Monitor(threading.Thread):
    """Every 0.2 s: which servers accept writes, and the dagq database's client sessions
    on each (by backend pid), asked of each server directly."""

    def __init__(self, servers: Callable[[], list[tuple[str, str]]], database: str) -> None:
        super().__init__(name="failover-monitor", daemon=True)
        self.servers, self.database = servers, database
        self.samples: list[Sample] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.2):
            writable, replicas, count = [], set(), 0
            for name, url in self.servers():
                state = self._ask(url)
                if state is None:
                    continue
                in_recovery, pids = state
                if in_recovery:
                    replicas |= {(name, pid) for pid in pids}
                else:
                    writable.append(name)
                    count += len(pids)
            self.samples.append(Sample(time.time(), writable, replicas, count))

    def _ask(self, url: str) -> tuple[bool, list[int]] | None:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=1) as conn:
                recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
                pids = [r[0] for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s"
                    " AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                    (self.database,))]
        except psycopg.Error:
            return None
        return recovery, pids

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)

    def first_writable_after(self, t: float, name: str | None = None) -> float | None:
        return next((s.at for s in self.samples if s.at > t and s.writable
                     and (name is None or name in s.writable)), None)

    def most_writable(self) -> int:
        return max((len(s.writable) for s in self.samples), default=0)

    def longest_on_a_replica_s(self) -> float:
        """How long any one dagq session stayed on a server in recovery (consecutive
        samples of the same backend)."""
        first_seen: dict[tuple[str, int], float] = {}
        longest = 0.0
        for sample in self.samples:
            first_seen = {k: first_seen.get(k, sample.at) for k in sample.on_replicas}
            longest = max([longest, *(sample.at - t for t in first_seen.values())])
        return longest

    def most_connections(self) -> int:
        return max((s.connections for s in self.samples), default=0)


def wait_all_terminal(url: str, run_ids: list[str], timeout: float = 120) -> dict[str, str]:
    """Each run's status once none is queued or running (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(url, autocommit=True) as conn:
            rows = dict(conn.execute("SELECT id::text, status FROM dagq.runs"
                                     " WHERE id = ANY(%s::uuid[])", (run_ids,)).fetchall())
        if all(rows.get(r) not in (None, "queued", "running") for r in run_ids) \
                or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def effect_report(url: str, effects_path: str, run_ids: list[str]) -> dict[str, int]:
    """Counts the invariants are asserted on: effects, attempts run twice, succeeded
    nodes whose final attempt left no effect, nodes ended twice (a stale completion)."""
    lines = effects(effects_path)
    twice = [k for k, n in Counter(lines).items() if n > 1]
    with psycopg.connect(url, autocommit=True) as conn:
        done = conn.execute(
            "SELECT run_id::text, node_key, attempts FROM dagq.node_tasks"
            " WHERE run_id = ANY(%s::uuid[]) AND status = 'succeeded'", (run_ids,)).fetchall()
        # A completion accepted from a stale lease would end a node a second time.
        ended_twice = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM dagq.run_events"
            " WHERE run_id = ANY(%s::uuid[]) AND type IN ('node_succeeded', 'node_failed')"
            " GROUP BY run_id, node_key HAVING count(*) > 1) AS twice",
            (run_ids,)).fetchone()[0]
    seen = set(lines)
    missing = [d for d in done if (d[0], d[1], d[2]) not in seen]
    return {"effects": len(lines), "twice": len(twice), "succeeded_nodes": len(done),
            "without_effect": len(missing), "nodes_ended_twice": ended_twice}


def first_completion_after(url: str, t: float) -> float | None:
    """Wall time of the first node finished after `t` (the server's clock: same host)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT extract(epoch FROM min(finished_at)) FROM dagq.node_tasks"
                           " WHERE finished_at > to_timestamp(%s)", (t,)).fetchone()
    return float(row[0]) if row and row[0] is not None else None


class Forward:
    """127.0.0.1:`port` forwarded to a Postgres server (unix socket or TCP), to play a
    server that goes away: `down()` resets every connection and stops listening (new
    ones are refused), `up()` listens on the same port again."""

    def __init__(self, url: str) -> None:
        params = conninfo_to_dict(url)
        host, port = str(params.get("host") or "/tmp"), int(params.get("port") or 5432)
        self.target = (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}") if host.startswith("/") \
            else (socket.AF_INET, (host, port))
        self.url = make_conninfo(url, host="127.0.0.1", port=0)
        self.port = 0
        self._socks: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self.port = self._listener.getsockname()[1]
        self.url = make_conninfo(self.url, port=self.port)
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(self.target[0])
            upstream.connect(self.target[1])
            self._socks += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def down(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes accept() (a close alone does not)
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        socks, self._socks = self._socks, []
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    close = down


# Each process's server sessions at most: a worker's pool (threads + 4) and its LISTEN
# connection, the API's pool and its LISTEN connection, the sweeper's pool of 4 (and one
# more for its sessions outside the pool).
WORKERS, THREADS, API_POOL = 2, 4, 6
BUDGET = WORKERS * (THREADS + 4 + 1) + (API_POOL + 1) + (4 + 1)


class Stack:
    """dagq's processes on `url` (a migrated database named `database`): two workers,
    the sweeper and the API, with the effect executor; a submitter and a monitor of
    the `servers` ((name, url of `database` on that server) pairs), not yet started."""

    def __init__(self, url: str, database: str, servers: Callable[[], list[tuple[str, str]]],
                 tmp: Path, *, sleep_s: float = 0.02) -> None:
        self.url, self.database = url, database
        self.effects = str(tmp / "effects.txt")
        self.fleet = WorkerFleet(url, tmp)
        env = {"DAGQ_ACTOR_MODULES": "tests.harness.effects", "DAGQ_TEST_EFFECTS": self.effects,
               "DAGQ_POOL_SIZE": str(API_POOL), "DAGQ_LOG_LEVEL": "INFO"}
        for _ in range(WORKERS):
            self.fleet.start(threads=THREADS, **env)
        self.fleet.start_sweeper(**env)
        port = free_port()
        self.fleet.start_api(port, **env)
        self.base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _status(f"{self.base}/readyz") == 200, 60, "the API to be ready")
        spec = json.loads(json.dumps(WORKFLOW))
        for node in spec["nodes"].values():
            node["params"] = {"sleep_s": sleep_s}
        wait_for(lambda: httpx.post(f"{self.base}/v1/workflows", json=spec,
                                    timeout=10).status_code in (200, 201),
                 60, "the workers to register failover.effect")
        self.monitor = Monitor(servers, database)
        self.submitter = Submitter(self.base)

    def start_load(self) -> None:
        self.monitor.start()
        self.submitter.start()

    def run_until(self, accepted: int, timeout: float) -> None:
        wait_for(lambda: len(self.submitter.accepted) >= accepted, timeout,
                 f"{accepted} accepted submits (failures: {self.submitter.failures[-3:]})")

    def more(self, n: int = 60, timeout: float = 90) -> None:
        """Wait for `n` more accepted submits."""
        self.run_until(len(self.submitter.accepted) + n, timeout)

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

    def assert_invariants(self, report: dict[str, int]) -> None:
        logs = self.fleet.logs
        assert report["succeeded_runs"] == report["runs"], (report, logs())
        assert report["succeeded_nodes"] == report["runs"] * NODES_PER_RUN, report
        assert report["twice"] == 0, report
        assert report["without_effect"] == 0, report
        assert report["nodes_ended_twice"] == 0, report
        assert self.monitor.most_writable() == 1, "two writable servers at once"
        assert self.monitor.longest_on_a_replica_s() <= 2.5, \
            self.monitor.longest_on_a_replica_s()
        assert self.monitor.most_connections() <= BUDGET, \
            (self.monitor.most_connections(), BUDGET)
        for proc in self.fleet.procs:  # the same processes throughout: none restarted
            assert proc.poll() is None, logs()

    def close(self) -> None:
        self.submitter.stopping.set()
        self.monitor.stopping.set()
        self.fleet.stop_all()


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0
