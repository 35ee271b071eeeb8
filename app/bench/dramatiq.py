"""The `dramatiq` phase of `dagq bench`: plain Dramatiq actors on PostgresBroker.

1. Sends from one producer: `actor.send()` back to back on one thread (each a durable
   one-node run: one statement, one round trip), then more through `group`
   (`broker.enqueue_many`: one statement per batch of 500). Beside them the floor under any
   durable one-by-one send: one-row INSERTs committed back to back on one connection.
2. The drain of those messages (plain no-op actors) by `--workers` x `--threads`
   `dagq worker` processes, from the database's clocks.
3. Idle send -> start: one message at a time on idle workers; server clocks (the send's
   statement start to the lease's), as the latency phase measures submits.
4. The same sends and drain on Dramatiq's RedisBroker, when redis-server is here
   (dagq.bench.redis_side).
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from typing import Any

import dramatiq
import psycopg
from psycopg.types.json import Jsonb

from dagq.bench import phases as ph
from dagq.bench.fleet import WorkerFleet
from dagq.bench.redis_side import redis_figures
from dagq.errors import DagqError
from dagq.states import TERMINAL_RUN_STATUSES
from dagq.workers.broker import PostgresBroker

log = logging.getLogger("dagq.bench")

ACTORS = "dagq.bench.dramatiq_actors"
GROUP_BATCH = 500


def dramatiq_phase(b: ph.Bench, *, sends: int, grouped: int,
                   latency_samples: int) -> dict[str, Any]:
    producer = PostgresBroker(url=b.url)
    previous = dramatiq.broker.global_broker
    dramatiq.set_broker(producer)  # the actor module declares its actors on it
    try:
        sys.modules.pop(ACTORS, None)
        actors = importlib.import_module(ACTORS)
        floor = _send_floor(b, sends)
        sent = ph.send_rate(actors.bench_drain, sends)
        in_groups = _group_sends(actors.bench_drain, grouped)
        log.info("dramatiq: %d sends at %.0f/s one by one, %d at %.0f/s in groups; "
                 "draining", sends, sent["sends_per_s"], grouped, in_groups["sends_per_s"])
        b.checkpoint()
        fleet = WorkerFleet(b.url, processes=b.workers, threads=b.threads,
                            log_dir=b.log_dir, name="bench-dramatiq",
                            env={"DAGQ_ACTOR_MODULES": ACTORS})
        with fleet:
            fleet.start()
            fleet.wait_ready(b.conn, b.q["alive_workers"])
            _wait_drained(b, "bench_drain", fleet)
            drained = _drain_figures(b, "bench_drain")
            time.sleep(1.0)  # idle: blocked on LISTEN
            latency = _latency(b, fleet, actors.bench_latency, latency_samples)
            fleet.stop()
    finally:
        sys.modules.pop(ACTORS, None)
        dramatiq.broker.global_broker = previous
        producer.close()
    redis = redis_figures(sends=sends, grouped=grouped, workers=b.workers,
                          threads=b.threads, scratch=b.log_dir / "redis")
    return {"send": sent, "send_floor": floor, "group_send": in_groups, "drain": drained,
            "latency": latency, "workers": b.workers, "threads": b.threads, "redis": redis}


def _send_floor(b: ph.Bench, count: int) -> dict[str, Any]:
    """What any durable one-by-one send from one thread can reach here: a one-row
    INSERT committed per statement, back to back on one connection."""
    body = Jsonb({"args": []})
    with psycopg.connect(b.url, autocommit=True) as conn:
        conn.execute(b.q["send_floor_create"])
        try:
            seconds = ph.one_by_one(lambda: conn.execute(
                b.q["send_floor_insert"], {"body": body}, prepare=True), count)
        finally:
            conn.execute(b.q["send_floor_drop"])
    return {"rows": count, "rows_per_s": round((count - 1) / seconds, 1),
            "ms_per_row": round(seconds / (count - 1) * 1000, 3)}


def _group_sends(actor: Any, count: int) -> dict[str, Any]:
    started = time.perf_counter()
    left = count
    while left:
        n = min(GROUP_BATCH, left)
        with actor.broker.batch():  # the group's sends: one statement
            dramatiq.group(actor.message() for _ in range(n)).run()
        left -= n
    seconds = time.perf_counter() - started
    return {"messages": count, "batch": GROUP_BATCH, "seconds": round(seconds, 3),
            "sends_per_s": round(count / seconds, 1)}


def _wait_drained(b: ph.Bench, workflow: str, fleet: WorkerFleet) -> None:
    last_mark, last_change = -1, time.monotonic()
    while b.one("messages_open", {"workflow": workflow})["open"]:
        fleet.check_alive()
        now = time.monotonic()
        mark = b.one("progress_mark")["mark"]
        if mark != last_mark:
            last_mark, last_change = mark, now
        elif now - last_change > ph.STALL_TIMEOUT_S:
            raise DagqError(f"{workflow}: no message started or finished for "
                            f"{ph.STALL_TIMEOUT_S:.0f}s\n{fleet.log_tails()}")
        time.sleep(ph.DRAIN_POLL_S)


def _drain_figures(b: ph.Bench, workflow: str) -> dict[str, Any]:
    return ph.span_figures(b.one("message_span", {"workflow": workflow}), workflow,
                           "messages")


def _latency(b: ph.Bench, fleet: WorkerFleet, actor: Any, samples: int) -> dict[str, Any]:
    with psycopg.connect(b.url, autocommit=True) as listen:
        listen.execute(b.q["listen_events"])
        for _ in range(samples):
            message = actor.send()
            deadline = time.monotonic() + ph.STALL_TIMEOUT_S
            while not _finished(b, message.message_id):
                fleet.check_alive()
                if time.monotonic() > deadline:
                    raise DagqError(f"message {message.message_id} did not finish\n"
                                    f"{fleet.log_tails()}")
                for _note in listen.notifies(timeout=0.5, stop_after=1):
                    pass
            time.sleep(0.01)
    rows = b.conn.execute(b.q["message_start_latency"],
                          {"workflow": actor.actor_name}).fetchall()
    return {"samples": len(rows), **ph.percentiles([float(r["start_ms"]) for r in rows])}


def _finished(b: ph.Bench, message_id: str) -> bool:
    row = b.conn.execute(b.q["message_status"], {"event_key": message_id}).fetchone()
    return row is not None and row["status"] in TERMINAL_RUN_STATUSES
