"""PostgresBroker as a Dramatiq broker, on real Postgres (issue 19): the default
middleware, a message's options mapped onto its node row, join and flush, and the
result backend's rows."""

from __future__ import annotations

import threading
import time

import dramatiq
import pytest
from dramatiq.errors import QueueJoinTimeout
from dramatiq.middleware import (
    AgeLimit,
    AsyncIO,
    Callbacks,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)
from dramatiq.results import ResultMissing, ResultTimeout

from dagq import PostgresResultBackend
from dagq.workers.broker import PostgresBroker
from dagq.workers.middleware import DagqMiddleware
from dagq.workers.registry import ExecutorDef
from dagq.workers.retries import DagqRetries


def make_broker(repo, **kwargs) -> PostgresBroker:
    return PostgresBroker(repo, worker_id="test", lease_ttl_s=30, max_output_bytes=10_000,
                          **kwargs)


def node_row(sql, message):
    return sql.execute(
        "SELECT t.*, t.available_at - r.created_at AS delay FROM dagq.node_tasks t "
        "JOIN dagq.runs r ON r.id = t.run_id WHERE r.event_key = %s",
        (message.message_id,)).fetchone()


def test_the_broker_starts_with_dramatiqs_default_middleware(repo) -> None:
    broker = make_broker(repo)
    assert [type(m) for m in broker.middleware] == [
        AgeLimit, TimeLimit, ShutdownNotifications, Callbacks, Pipelines, DagqRetries,
        AsyncIO]  # AsyncIO: async def actors and executors (its event loop)
    assert isinstance(broker.lease_hooks, DagqMiddleware)  # run by the broker itself

    @dramatiq.actor(broker=broker, notify_shutdown=True, on_failure="x", max_age=5)
    def declared():
        pass

    with pytest.raises(ValueError, match="bogus"):
        dramatiq.actor(broker=broker, bogus=1)(lambda: None)


def test_a_given_retries_middleware_becomes_dagq_retries_with_its_settings(repo, sql) -> None:
    broker = make_broker(repo, middleware=[Retries(max_retries=3, min_backoff=50)])
    assert [type(m) for m in broker.middleware] == [DagqRetries]
    actor = dramatiq.actor(broker=broker, actor_name="given")(lambda: None)
    row = node_row(sql, actor.send())
    # No TimeLimit here: time_limit (10 min) is dagq's own timeout, without a margin.
    assert (row["max_attempts"], row["backoff_initial_s"], row["timeout_s"]) == (4, 0.05, 600)


def test_a_broker_without_middleware_serves_executors_and_never_retries(repo, sql) -> None:
    broker = make_broker(repo, middleware=[])
    assert broker.middleware == []
    broker.declare_executor(ExecutorDef("bare.exec", lambda payload: {}))
    assert "bare.exec" in broker.served
    actor = dramatiq.actor(broker=broker, actor_name="bare")(lambda: None)
    row = node_row(sql, actor.send())
    assert (row["max_attempts"], row["timeout_s"]) == (1, 600)  # as Dramatiq: no Retries


def test_options_map_onto_the_node_row(repo, sql) -> None:
    broker = make_broker(repo)
    actor = dramatiq.actor(broker=broker, actor_name="mapped", priority=7, max_retries=5,
                           time_limit=3000, min_backoff=2000, max_backoff=9000,
                           queue_name="q1")(lambda: None)
    row = node_row(sql, actor.send_with_options(delay=60_000))
    assert row["queue"] == "q1" and row["priority"] == -7  # lower Dramatiq number first
    assert (row["max_attempts"], row["timeout_s"]) == (6, 5.0)  # time_limit + 2 s margin
    assert (row["backoff_initial_s"], row["backoff_max_s"]) == (2.0, 9.0)
    assert 59 <= row["delay"].total_seconds() <= 61
    assert row["params"]["dramatiq"]["options"] == {}
    unlimited = dramatiq.actor(broker=broker, actor_name="forever",
                               max_retries=None)(lambda: None)
    assert node_row(sql, unlimited.send())["max_attempts"] == 100
    with pytest.raises(ValueError, match="priority"):
        dramatiq.actor(broker=broker, actor_name="loud", priority=-5000)(lambda: None).send()


def test_join_waits_for_the_queue_and_flush_drops_waiting_messages(repo, sql) -> None:
    broker = make_broker(repo)
    actor = dramatiq.actor(broker=broker, actor_name="waiting")(lambda: None)
    broker.join("default", timeout=1000)  # empty: returns at once
    messages = [actor.send() for _ in range(3)]
    with pytest.raises(QueueJoinTimeout):
        broker.join("default", timeout=200)
    broker.flush("default")
    broker.join("default", timeout=1000)
    statuses = {row["status"] for row in sql.execute(
        "SELECT status FROM dagq.runs WHERE event_key = ANY(%s)",
        ([m.message_id for m in messages],)).fetchall()}
    assert statuses == {"cancelled"}
    with pytest.raises(ValueError, match="timeout"):
        broker.join("default", timeout=-1)


def test_join_fail_fast_raises_the_failed_messages_exception(repo, sql) -> None:
    broker = make_broker(repo)
    actor = dramatiq.actor(broker=broker, actor_name="doomed")(lambda: None)
    message = actor.send()
    sql.execute(
        "UPDATE dagq.node_tasks t SET status = 'failed', finished_at = now(), "
        "error = '{\"type\": \"ValueError\", \"message\": \"bad input\"}' "
        "FROM dagq.runs r WHERE r.id = t.run_id AND r.event_key = %s", (message.message_id,))
    broker.join("default", fail_fast=False, timeout=1000)  # the queue is empty
    with pytest.raises(ValueError, match="bad input"):
        broker.join("default", timeout=1000)  # fail_fast by default, as StubBroker's
    broker.flush("default")  # a flush forgets earlier dead letters, as in Dramatiq
    broker.join("default", fail_fast=True, timeout=1000)


def test_result_backend_stores_expires_and_wakes_a_blocked_reader(repo, db_url) -> None:
    backend = PostgresResultBackend(store=repo)
    message = dramatiq.Message(queue_name="default", actor_name="a", args=(), kwargs={},
                               options={})
    with pytest.raises(ResultMissing):
        backend.get_result(message)
    with pytest.raises(ResultTimeout):
        backend.get_result(message, block=True, timeout=100)
    threading.Timer(0.3, backend.store_result, (message, {"answer": 42}, 60_000)).start()
    started = time.monotonic()
    assert backend.get_result(message, block=True, timeout=5000) == {"answer": 42}
    assert time.monotonic() - started < 1.0  # woken by NOTIFY, not the 1 s recheck
    backend.store_result(message, "short", 1)
    time.sleep(0.01)
    with pytest.raises(ResultMissing):
        backend.get_result(message)  # expired
    assert repo.messages.prune_results() == 1
    with pytest.raises(ValueError, match="url"):
        PostgresResultBackend(url="")


def test_a_broker_under_the_dramatiq_cli_lists_only_the_queues_it_consumes(
        db_url: str, sql) -> None:
    """A `PostgresBroker(url=...)` registered at its first consume with every declared
    queue: under `dramatiq app --queues a` it claimed to serve queue b too, so b's
    messages for its actors were never warned about nor dead-lettered."""
    broker = PostgresBroker(url=db_url)
    try:
        for queue in ("qa", "qb"):
            dramatiq.actor(broker=broker, actor_name=f"on_{queue}", queue_name=queue)(
                lambda: None)
        broker.consume("qa")
        row = sql.execute("SELECT queues, executors FROM dagq.workers WHERE id = %s",
                          (broker.worker_id,)).fetchone()
        assert row["queues"] == ["qa"]
        broker.consume("qb")
        row = sql.execute("SELECT queues FROM dagq.workers WHERE id = %s",
                          (broker.worker_id,)).fetchone()
        assert row["queues"] == ["qa", "qb"]
    finally:
        broker.close()
