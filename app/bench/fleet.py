"""Worker processes for `dagq bench`: spawn `python -m dagq.workers`, wait until they serve,
sample their memory, and always stop them (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from dagq.errors import DagqError
from dagq.runtime.procs import child_env, die_with_parent

log = logging.getLogger("dagq.bench")

STOP_GRACE_S = 20.0
READY_TIMEOUT_S = 60.0
SAMPLE_EVERY_S = 0.25
def read_memory_kb(pid: int) -> dict[str, int] | None:
    """VmRSS and VmHWM (peak RSS) of a live process, in kB."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, value = line.split(":", 1)
                    found[name] = int(value.split()[0])
    except (OSError, ValueError):
        return None
    return found if len(found) == 2 else None


@dataclass
class WorkerProc:
    index: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    ready_at: float | None = None
    start_rss_kb: int | None = None
    last_rss_kb: int | None = None
    peak_hwm_kb: int | None = None
    drained_at: float | None = None
    samples: list[tuple[float, int]] = field(default_factory=list)

    def rss_near(self, when: float) -> int | None:
        if not self.samples:
            return None
        return min(self.samples, key=lambda sample: abs(sample[0] - when))[1]

    def second_half_growth(self, nodes: int) -> float | None:
        """kB per 1,000 nodes between the middle and the end of the drain: warm-up
        (imports, caches, prepared statements) is over by then, a leak is not."""
        if self.ready_at is None or self.drained_at is None or nodes < 2:
            return None
        middle = self.rss_near((self.ready_at + self.drained_at) / 2)
        end = self.rss_near(self.drained_at)
        if middle is None or end is None:
            return None
        return round((end - middle) / (nodes / 2) * 1000, 1)

    def sample(self) -> None:
        memory = read_memory_kb(self.proc.pid)
        if memory is None:
            return
        self.last_rss_kb = memory["VmRSS"]
        self.peak_hwm_kb = max(self.peak_hwm_kb or 0, memory["VmHWM"])
        self.samples.append((time.monotonic(), memory["VmRSS"]))


class WorkerFleet:
    """N worker processes x T threads on one database; a context manager that always
    stops them."""

    def __init__(self, url: str, *, processes: int, threads: int, log_dir: Path,
                 name: str, env: dict[str, str] | None = None) -> None:
        self.url = url
        self.extra_env = dict(env or {})
        self.processes = processes
        self.threads = threads
        self.log_dir = log_dir
        self.name = name
        self.workers: list[WorkerProc] = []
        self._stop_sampling = threading.Event()
        self._sampler: threading.Thread | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> WorkerFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        env = child_env(self.url, **{
            "DAGQ_LOG_LEVEL": os.environ.get("DAGQ_BENCH_WORKER_LOG_LEVEL", "WARNING"),
            "DAGQ_TEST_EXECUTORS": "on",  # its scratch database, its own workers
            **self.extra_env})  # a phase may set the log level too (api: as `dagq up`)
        argv = [sys.executable, "-m", "dagq.workers", "--threads", str(self.threads)]
        for i in range(self.processes):
            log_path = self.log_dir / f"{self.name}-worker-{i + 1}.log"
            with open(log_path, "wb") as out:
                proc = subprocess.Popen(
                    argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=die_with_parent,  # only calls prctl(2)
                )
            self.workers.append(WorkerProc(i + 1, proc, log_path))
        self._sampler = threading.Thread(target=self._sample_loop, name="bench-rss",
                                         daemon=True)
        self._sampler.start()

    def wait_ready(self, conn: psycopg.Connection[Any], query: str) -> None:
        """Until every process registered itself in dagq.workers (imports done, pool
        open); its RSS then is the 'start' figure."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        pending = {w.proc.pid: w for w in self.workers}
        while pending:
            self.check_alive()
            rows = conn.execute(query, {"pids": list(pending)}).fetchall()
            for row in rows:
                worker = pending.pop(_first(row))
                worker.ready_at = time.monotonic()
                with self._lock:
                    worker.sample()
                    worker.start_rss_kb = worker.last_rss_kb
            if pending:
                if time.monotonic() > deadline:
                    raise DagqError(f"worker processes did not start in {READY_TIMEOUT_S:.0f}s"
                                    f"\n{self.log_tails()}")
                time.sleep(0.01)

    def check_alive(self) -> None:
        for worker in self.workers:
            code = worker.proc.poll()
            if code is not None:
                tail = _tail(worker.log_path)
                raise DagqError(f"bench worker {worker.index} exited with {code}:\n{tail}")

    def stop(self) -> None:
        """SIGTERM every process, wait for a clean stop, SIGKILL what is left."""
        self._stop_sampling.set()
        with self._lock:
            for worker in self.workers:
                if worker.proc.poll() is None:
                    worker.sample()  # the 'end' figure, before shutdown frees anything
        for worker in self.workers:
            if worker.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        try:
            for worker in self.workers:
                try:
                    worker.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("bench worker %d did not stop in %.0fs; killing it",
                                worker.index, STOP_GRACE_S)
        finally:  # also on a second Ctrl-C while waiting
            for worker in self.workers:
                if worker.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        worker.proc.kill()
                    worker.proc.wait()
        if self._sampler is not None:
            self._sampler.join(timeout=2)

    # -- memory -----------------------------------------------------------------------

    def _sample_loop(self) -> None:
        while not self._stop_sampling.wait(SAMPLE_EVERY_S):
            with self._lock:
                for worker in self.workers:
                    if worker.proc.poll() is None:
                        worker.sample()

    def mark_drained(self) -> None:
        """The phase's queue is empty: sample now, for the second-half growth figure."""
        with self._lock:
            for worker in self.workers:
                if worker.proc.poll() is None:
                    worker.sample()
                    worker.drained_at = time.monotonic()

    def log_tails(self, lines: int = 20) -> str:
        """The last lines each worker logged (the logs go with the temporary directory)."""
        return "\n".join(f"--- {self.name} worker {w.index} (pid {w.proc.pid}):\n"
                         f"{_tail(w.log_path, lines)}" for w in self.workers)

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers]

    def memory_report(self, nodes_by_pid: dict[int, int]) -> list[dict[str, Any]]:
        """Per process: RSS when it was ready, at the end, its peak, and nodes it ran."""
        report = []
        for worker in self.workers:
            nodes = nodes_by_pid.get(worker.proc.pid, 0)
            growth = None
            if worker.start_rss_kb is not None and worker.last_rss_kb is not None and nodes:
                growth = round((worker.last_rss_kb - worker.start_rss_kb) / nodes * 1000, 1)
            report.append({
                "pid": worker.proc.pid, "start_rss_kb": worker.start_rss_kb,
                "end_rss_kb": worker.last_rss_kb, "peak_hwm_kb": worker.peak_hwm_kb,
                "nodes": nodes, "growth_kb_per_1k_nodes": growth,
                "second_half_growth_kb_per_1k_nodes": worker.second_half_growth(nodes),
            })
        return report


def _first(row: Any) -> Any:
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
