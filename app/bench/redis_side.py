"""Dramatiq + Redis beside dagq, in the `dramatiq` phase of `dagq bench`.

The same work as dagq's side: `actor.send()` back to back from one producer thread
(then the same count as dagq's side in a `group`), then the drain of those
messages by the `dramatiq` CLI with the same processes x
threads, on a private redis-server (Debian's, on a unix socket in the bench's scratch
folder) started twice: with Redis' default persistence (RDB snapshots, `appendonly
no`: a message is in memory only until the next snapshot) and with `appendfsync always`
(each write fsynced before the reply, as durable as dagq's commit). Optional: whatever
goes wrong on this side is reported as the reason it was not measured, and dagq's own
figures stand. The drain is timed from the
first message taken to the queue's last ack, by polling the queue's size (Dramatiq's
`qsize`: queued plus unacked) every POLL_S.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dagq.bench.phases import send_rate
from dagq.errors import DagqError

log = logging.getLogger("dagq.bench")

ACTORS = "dagq.bench.redis_actors"
POLL_S = 0.005
START_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 300.0
# Redis' default persistence (RDB snapshots now and then, no append-only file), and
# every write fsynced to the append-only file before its reply (no snapshots).
MODES = {"redis_default": [],
         "redis_fsync_always": ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]}


def missing() -> str | None:
    """Why Dramatiq + Redis cannot be measured here, or None."""
    if shutil.which("redis-server") is None:
        return "no redis-server on PATH (Debian: apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis package is not installed (pip install redis)"
    return None


def redis_figures(*, sends: int, grouped: int, workers: int, threads: int,
                  scratch: Path) -> dict[str, Any]:
    """Both persistence modes' sends and drain, or why they were not measured."""
    reason = missing()
    if reason is not None:
        log.warning("dramatiq: no Dramatiq + Redis figures: %s", reason)
        return {"skipped": reason}
    figures: dict[str, Any] = {}
    for mode, flags in MODES.items():
        folder = scratch / mode
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with _redis_server(folder, flags) as url:
                figures[mode] = _measure(url, sends=sends, grouped=grouped,
                                         workers=workers, threads=threads, logs=folder)
        except Exception as exc:  # noqa: BLE001 - a comparison must not sink the bench
            log.warning("dramatiq: Dramatiq + Redis (%s) failed: %s", mode, exc)
            return {**figures, "skipped": f"{mode}: {type(exc).__name__}: {exc}"}
        log.info("dramatiq: Redis (%s): %.0f sends/s, drain %.0f messages/s", mode,
                 figures[mode]["send"]["sends_per_s"], figures[mode]["drain"]["messages_per_s"])
    return figures


@contextlib.contextmanager
def _redis_server(folder: Path, flags: list[str]) -> Iterator[str]:
    socket = folder / "redis.sock"
    with (folder / "redis.log").open("wb") as log_file:
        server = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", str(socket), "--dir", str(folder),
             *flags], stdout=log_file, stderr=subprocess.STDOUT)
    url = f"unix://{socket}"
    try:
        _wait_ping(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait_ping(url: str, server: subprocess.Popen[bytes]) -> None:
    import redis

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise DagqError(f"redis-server exited with {server.returncode}")
        with contextlib.suppress(redis.RedisError), redis.Redis.from_url(url) as client:
            if client.ping():
                return
        time.sleep(0.05)
    raise DagqError("redis-server did not answer")


def _measure(url: str, *, sends: int, grouped: int, workers: int, threads: int,
             logs: Path) -> dict[str, Any]:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=url)
    actor = dramatiq.actor(lambda: None, actor_name="bench_drain", max_retries=0,
                           broker=broker)
    try:
        send = send_rate(actor, sends)  # as dagq's side
        dramatiq.group((actor.message() for _ in range(grouped)), broker=broker).run()
        drain = _drain(broker, url, sends + grouped, workers=workers, threads=threads,
                       logs=logs)
    finally:
        broker.close()
    return {"send": send, "drain": drain}


def _drain(broker: Any, url: str, count: int, *, workers: int, threads: int,
           logs: Path) -> dict[str, Any]:
    env = {**os.environ, "DAGQ_BENCH_REDIS_URL": url}
    with (logs / "dramatiq.log").open("wb") as log_file:
        fleet = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", ACTORS, "--processes", str(workers),
             "--threads", str(threads)],
            env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        first = last = None
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            left = broker.do_qsize("default")
            now = time.perf_counter()
            if first is None and left < count:
                first = now
            if left == 0:
                last = now
                break
            if fleet.poll() is not None:
                raise DagqError(f"the dramatiq CLI exited with {fleet.returncode}")
            time.sleep(POLL_S)
        if first is None or last is None:
            raise DagqError(f"Redis: {count} messages not drained in {DRAIN_TIMEOUT_S:.0f}s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(fleet.pid, signal.SIGTERM)
        try:
            fleet.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(fleet.pid, signal.SIGKILL)
            fleet.wait()
    seconds = max(last - first, POLL_S)
    return {"messages": count, "seconds": round(seconds, 3),
            "messages_per_s": round(count / seconds, 1)}
