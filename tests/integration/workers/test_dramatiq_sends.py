"""Faster sends (issue 19 item 7): `actor.send()` is one round trip (one statement, no
NOTIFY on the caller's connection: the notifier thread sends it after the commit), and
`enqueue_many` / `group` inside `broker.batch()` write every message in one statement,
as the same runs single sends make. Round trips counted from libpq's protocol trace."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import psycopg
import pytest
from psycopg import pq

from dagq.workers.broker import PostgresBroker


class PerCheckout:
    """The frontend messages of each connection checked out of `pool`, with the name of
    the thread that checked it out."""

    def __init__(self, pool: Any, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.checkouts: list[tuple[str, Path]] = []
        real = pool.connection

        @contextlib.contextmanager
        def connection(*args: Any, **kwargs: Any) -> Iterator[Any]:
            path = tmp / f"trace-{len(self.checkouts)}"
            self.checkouts.append((threading.current_thread().name, path))
            with real(*args, **kwargs) as conn, path.open("a") as out:
                conn.pgconn.trace(out.fileno())
                conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
                try:
                    yield conn
                finally:
                    conn.pgconn.untrace()

        monkeypatch.setattr(pool, "connection", connection)

    def of(self, thread: str) -> list[str]:
        return [p.read_text() for name, p in self.checkouts if name == thread]


def sent(trace: str, message: str) -> int:
    return sum(1 for line in trace.splitlines()
               if line.startswith("F\t") and f"\t{message}" in line)


def one_round_trip(trace: str) -> bool:
    """One statement executed, in one round trip (one Sync); a statement this pooled
    connection had not prepared yet costs one more, once (psycopg's Parse + Sync)."""
    return sent(trace, "Execute") == 1 and sent(trace, "Sync") == 1 + sent(trace, "Parse")


def runs_of(sql, workflow: str) -> list[dict]:
    return sql.execute(
        "SELECT r.event_key, t.params, t.max_attempts, t.timeout_s, t.priority, "
        "t.backoff_initial_s, t.status FROM dagq.runs r JOIN dagq.node_tasks t ON "
        "t.run_id = r.id WHERE r.workflow = %s ORDER BY r.created_at", (workflow,)).fetchall()


def test_a_send_is_one_round_trip_and_its_notify_follows(repo, db_url, sql, tmp_path,
                                                         monkeypatch) -> None:
    broker = PostgresBroker(repo, worker_id="producer")
    actor = dramatiq.actor(broker=broker, actor_name="fast", queue_name="fastq")(
        lambda x: x)
    actor.send(0)  # warm: the pool's connections and prepared statements
    traced = PerCheckout(repo.db.pool, tmp_path, monkeypatch)
    with psycopg.connect(db_url, autocommit=True) as listen:
        listen.execute("LISTEN dagq_queued")
        actor.send(1)
        notes = [n.payload for n in listen.notifies(timeout=5, stop_after=1)]
    broker.close()
    mine = traced.of(threading.current_thread().name)
    assert len(mine) == 1 and one_round_trip(mine[0]), mine
    assert "pg_notify" not in mine[0]
    assert notes == ["fastq"]
    assert any("pg_notify" in t for t in traced.of("dagq-send-notifier"))
    assert len(runs_of(sql, "fast")) == 2


def test_enqueue_many_and_a_batched_group_are_one_statement(repo, sql, tmp_path,
                                                            monkeypatch) -> None:
    broker = PostgresBroker(repo, worker_id="producer")
    actor = dramatiq.actor(broker=broker, actor_name="many", max_retries=4, priority=3,
                           min_backoff=2000)(lambda x: x)
    single = actor.send(0)
    broker.enqueue_many([])  # sends nothing
    warm = actor.message(-1)
    broker.enqueue_many([warm])  # warm: the statement is prepared (its own round trip)
    messages = [actor.message(i) for i in range(1, 4)]
    traced = PerCheckout(repo.db.pool, tmp_path, monkeypatch)
    assert broker.enqueue_many(messages) == messages
    mine = traced.of(threading.current_thread().name)
    assert len(mine) == 1 and one_round_trip(mine[0]), mine
    rows = runs_of(sql, "many")
    assert [r["event_key"] for r in rows] == [m.message_id
                                              for m in [single, warm, *messages]]
    shape = {(r["max_attempts"], r["timeout_s"], r["priority"], r["backoff_initial_s"],
              r["status"]) for r in rows}
    assert shape == {(5, rows[0]["timeout_s"], -3, 2.0, "queued")}  # as the single send's
    assert [r["params"]["args"] for r in rows] == [[0], [-1], [1], [2], [3]]
    assert rows[2]["params"]["dramatiq"]["message_id"] == messages[0].message_id

    broker.enqueue_many(messages)  # idempotent by message id, as a single send is
    assert len(runs_of(sql, "many")) == 5

    with broker.batch():
        pipe = dramatiq.pipeline([actor.message(12), actor.message(13)], broker=broker)
        group = dramatiq.group([actor.message(10), actor.message(11), pipe], broker=broker)
        group.run()
        assert len(runs_of(sql, "many")) == 5  # nothing sent before the batch ends
    assert len(runs_of(sql, "many")) == 8  # 3 children (a pipeline sends its first)
    broker.close()
