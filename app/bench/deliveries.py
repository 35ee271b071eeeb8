"""The `deliveries` phase of `dagq bench` (issue 33, speed): webhook deliveries from the
outbox to a receiver on 127.0.0.1 inside the bench, sent by a real sweeper process
(`python -m dagq.sweeper`, DAGQ_HTTP_ALLOW=127.0.0.1), which runs through the whole phase.

Each repetition drains the flat workload twice, first with no subscription, then with
one subscription to every run's end (`run_succeeded`), and waits for every delivery:
- deliveries/s: deliveries received over the span from the first to the last;
- completion -> delivery: the receiver's clock when a delivery arrived minus its event's
  `created_at` (the completing transaction's time, on the same machine's clock). In a
  drain, completions come faster than one sweeper sends, so this includes the backlog;
- the drain with the subscription over the drain without (the outbox trigger's rows,
  the notifications and the sweeper's sending share the machine with the workers).
Then `paced`: runs submitted at PACED_RATE per second to running workers, so the
deliverer keeps up: completion -> delivery as a platform waiting for its callback sees it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dagq.bench import phases as ph
from dagq.bench.procstat import ticks_delta_ms, tree_ticks
from dagq.config import Settings
from dagq.errors import DagqError
from dagq.runtime.procs import child_env, die_with_parent
from dagq.service import webhooks as hooks

log = logging.getLogger("dagq.bench")

DELIVERED_TIMEOUT_S = 300.0  # every delivery of a repetition arrives within this
PACED_RATE = 200.0  # runs per second submitted to running workers (`paced`)
STOP_S = 20.0
TARGETS = {"deliveries_per_s": ">= 1,000", "paced_p50_ms": "<= 100",
           "drain_ratio": ">= 0.90"}


class BenchReceiver:
    """An HTTP/1.1 server on 127.0.0.1 (connections kept alive, as a real receiver's)
    that answers 204 and keeps each delivery's arrival time and body."""

    def __init__(self) -> None:
        self.got: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                at = time.time()
                with owner._lock:
                    owner.got.append((at, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        name="bench-receiver", daemon=True)

    def __enter__(self) -> BenchReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def take(self) -> list[tuple[float, bytes]]:
        with self._lock:
            got, self.got = self.got, []
        return got

    def wait_for(self, run_ids: set[str], sweeper: subprocess.Popen[bytes],
                 timeout_s: float = DELIVERED_TIMEOUT_S) -> list[tuple[float, dict[str, Any]]]:
        """Until a delivery of each of `run_ids` arrived; every delivery received."""
        received: list[tuple[float, dict[str, Any]]] = []
        missing = set(run_ids)
        deadline = time.monotonic() + timeout_s
        while missing:
            for at, body in self.take():
                event = json.loads(body)
                received.append((at, event))
                missing.discard(event["run_id"])
            if not missing:
                break
            if sweeper.poll() is not None:
                raise DagqError(f"the bench's sweeper exited with {sweeper.returncode}")
            if time.monotonic() > deadline:
                raise DagqError(f"deliveries: {len(missing)} of {len(run_ids)} runs' "
                                f"deliveries did not arrive in {timeout_s:.0f}s")
            time.sleep(0.05)
        return received


@contextlib.contextmanager
def sweeper_process(b: ph.Bench, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """The sweeper as `dagq up` runs it, allowed to reach the receiver on loopback."""
    env = child_env(b.url, DAGQ_HTTP_ALLOW="127.0.0.1", DAGQ_LOG_LEVEL="WARNING")
    with open(b.log_dir / f"{name}-sweeper.log", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dagq.sweeper"], env=env,
                                stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=die_with_parent)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def figures(received: list[tuple[float, dict[str, Any]]]) -> dict[str, Any]:
    """Deliveries/s and completion -> delivery percentiles of what arrived."""
    latencies = [(at - datetime.fromisoformat(event["created_at"]).timestamp()) * 1000
                 for at, event in received]
    times = sorted(at for at, _ in received)
    span = max(times[-1] - times[0], 1e-6) if len(times) > 1 else None
    return {"deliveries": len(received),
            "distinct": len({event["delivery_id"] for _, event in received}),
            "deliveries_per_s": round(len(received) / span, 1) if span else None,
            **ph.percentiles(latencies)}


def deliveries(b: ph.Bench, *, runs: int, paced_runs: int, repeat: int) -> dict[str, Any]:
    settings = Settings(http_allow="127.0.0.1")  # the subscription's URL is on loopback
    rounds: list[dict[str, Any]] = []
    with BenchReceiver() as receiver, sweeper_process(b, "deliveries") as sweeper:
        for i in range(repeat):
            log.info("deliveries %d/%d: %d runs drained without a subscription, then with "
                     "one", i + 1, repeat, runs)
            idle = tree_ticks([sweeper.pid])
            plain = ph.flat(b, runs, f"bench-deliver-plain-{i}")
            hooked = f"bench-deliver-hooked-{i}"
            hook = hooks.add_webhook(b.repo, settings, tenant=ph.TENANT, url=receiver.url,
                                     events=["run_succeeded"], workflow=hooked)
            busy = tree_ticks([sweeper.pid])
            drained = ph.flat(b, runs, hooked)
            received = receiver.wait_for(_run_ids(b, hooked), sweeper)
            done = tree_ticks([sweeper.pid])
            hooks.remove_webhook(b.repo, hook.record.id, None)
            rounds.append({"plain_nodes_per_s": plain["nodes_per_s"],
                           "hooked_nodes_per_s": drained["nodes_per_s"],
                           "drain_ratio": round(drained["nodes_per_s"]
                                                / plain["nodes_per_s"], 3),
                           **figures(received),
                           **_sweeper_cpu(ticks_delta_ms(idle, busy),
                                          ticks_delta_ms(busy, done), runs)})
        paced = _paced(b, settings, receiver, sweeper, paced_runs)
    return {"runs": runs, "rounds": rounds, "paced": paced, "targets": TARGETS,
            "median": {k: _median([r[k] for r in rounds]) for k in (
                "deliveries_per_s", "p50_ms", "p99_ms", "drain_ratio",
                "sweeper_cpu_us_per_delivery")}}


def _paced(b: ph.Bench, settings: Settings, receiver: BenchReceiver,
           sweeper: subprocess.Popen[bytes], runs: int) -> dict[str, Any]:
    """`runs` one-node runs submitted at PACED_RATE/s to running workers."""
    workflow = "bench-deliver-paced"
    spec = ph.flat_spec(workflow)
    hook = hooks.add_webhook(b.repo, settings, tenant=ph.TENANT, url=receiver.url,
                             events=["run_succeeded"], workflow=workflow)
    log.info("deliveries: %d runs submitted at %.0f/s to running workers", runs, PACED_RATE)
    with b.fleet(workflow) as fleet:
        fleet.start()
        fleet.wait_ready(b.conn, b.q["alive_workers"])
        started = time.monotonic()
        for n in range(runs):
            time.sleep(max(0.0, started + n / PACED_RATE - time.monotonic()))
            b.repo.submissions.submit_run(tenant=ph.TENANT, spec=spec, inputs={})
        ph.wait_drained(b, workflow, fleet)
        received = receiver.wait_for(_run_ids(b, workflow), sweeper)
        fleet.stop()
    hooks.remove_webhook(b.repo, hook.record.id, None)
    return {"runs": runs, "rate_per_s": PACED_RATE, **figures(received)}


def _sweeper_cpu(idle_ms: float | None, busy_ms: float | None,
                 runs: int) -> dict[str, Any]:
    """The sweeper's CPU (from /proc, so whatever else loads the machine): per delivery
    in the drain with a subscription (and what one core would send at that cost), and in
    the drain without one (its wake-ups for nothing)."""
    per = busy_ms * 1000 / runs if busy_ms is not None else None
    return {"sweeper_cpu_us_per_delivery": round(per, 1) if per else None,
            "deliveries_per_sweeper_core_s": round(1e6 / per) if per else None,
            "sweeper_cpu_ms_without_subscription": idle_ms}


def _run_ids(b: ph.Bench, workflow: str) -> set[str]:
    rows = b.conn.execute(b.q["run_ids"], {"workflow": workflow}).fetchall()
    return {row["id"] for row in rows}


def _median(values: list[Any]) -> Any:
    measured = sorted(v for v in values if v is not None)
    return measured[(len(measured) - 1) // 2] if measured else None
