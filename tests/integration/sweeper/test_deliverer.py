"""The sweeper's webhook deliverer (issue 33, speed): woken by dagq_webhooks after the
commit that wrote the delivery, so a run's end reaches the receiver well inside the poll
interval (set to 30 s here: only the wake explains a delivery within 0.5 s); without
LISTEN it polls; at most DAGQ_WEBHOOK_CONCURRENCY deliveries are in flight, on
connections kept alive; a stopped deliverer leaves its unrecorded claims due again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from dagq.config import Settings, get_settings
from dagq.service import webhooks as hooks
from dagq.store import Store
from dagq.sweeper.deliverer import Deliverer
from dagq.sweeper.passes import Sweeper
from examples.webhook_receiver import verify
from tests.harness.drive import drive
from tests.harness.procs import wait_for
from tests.harness.receiver import Receiver
from tests.harness.specs import spec

SECRET = "a-secret-for-the-deliverer"


def settings(**extra: object) -> Settings:
    return Settings(_env_file=None, http_allow="127.0.0.1", **extra)  # type: ignore[call-arg]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def subscribe(repo: Store, url: str) -> None:
    hooks.add_webhook(repo, settings(), tenant="acme", url=url, events=["run_succeeded"],
                      secret=SECRET)


def finish_runs(repo: Store, count: int = 1) -> float:
    """`count` one-node runs submitted and driven to their end; when they ended."""
    wf = spec({"a": {"executor": "builtin.noop"}})
    for _ in range(count):
        repo.submissions.submit_run(tenant="acme", spec=wf)
    drive(repo)
    return time.time()


def running(repo: Store, url: str | None, **extra: object) -> Deliverer:
    deliverer = Deliverer(repo, settings(**extra), url)
    deliverer.start()
    if url is not None:
        assert deliverer.listening.wait(10), "the deliverer never LISTENed"
    time.sleep(0.2)  # its first (empty) claim is done: it waits now
    return deliverer


def test_a_run_end_wakes_the_deliverer_within_the_poll_interval(
        repo, db_url, receiver) -> None:
    subscribe(repo, receiver.url)
    deliverer = running(repo, db_url, webhook_poll_s=30)
    try:
        ended = finish_runs(repo)
        wait_for(lambda: receiver.received, 5, "the delivery")
        [got] = receiver.received
        assert got.at - ended < 0.5, f"delivered {got.at - ended:.3f}s after the run's end"
        assert verify(SECRET, got.headers["dagq-signature"], got.body)
        wait_for(lambda: repo.webhooks.list_deliveries("acme", status="succeeded"), 5,
                 "the attempt recorded")
    finally:
        deliverer.stop()
    assert deliverer.take_counts() == {"webhooks_delivered": 1}


def test_without_listen_it_polls(repo, receiver) -> None:
    subscribe(repo, receiver.url)
    deliverer = running(repo, None, webhook_poll_s=30)  # DAGQ_LISTEN=off: nothing wakes it
    try:
        finish_runs(repo)
        time.sleep(1.0)
        assert receiver.received == []  # a wake-up would have sent it by now
    finally:
        deliverer.stop()
    polling = running(repo, None, webhook_poll_s=0.2)
    try:
        wait_for(lambda: receiver.received, 5, "the polled delivery")
    finally:
        polling.stop()


def test_listen_off_opens_no_listen_connection_and_polls(
        repo, db_url, receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """DAGQ_LISTEN=off (PgBouncer in transaction mode, no direct URL): no LISTEN, and
    the poll alone sends."""
    monkeypatch.setenv("DAGQ_LISTEN", "off")
    get_settings.cache_clear()
    try:
        subscribe(repo, receiver.url)
        deliverer = Deliverer(repo, settings(webhook_poll_s=0.3), db_url)
        assert [t.name for t in deliverer._threads] == ["dagq-webhook-claim",
                                                        "dagq-webhook-record"]
        deliverer.start()
        try:
            finish_runs(repo)
            wait_for(lambda: receiver.received, 5, "the polled delivery")
        finally:
            deliverer.stop()
        assert not deliverer.listening.is_set()
    finally:
        get_settings.cache_clear()


def test_a_redeliver_wakes_it_too(repo, db_url, receiver) -> None:
    subscribe(repo, receiver.url)
    finish_runs(repo)
    Sweeper(repo, settings()).webhooks()
    [delivery] = repo.webhooks.list_deliveries("acme")
    deliverer = running(repo, db_url, webhook_poll_s=30)
    try:
        asked = time.time()
        hooks.redeliver(repo, delivery.id, "acme")
        wait_for(lambda: len(receiver.received) == 2, 5, "the redelivery")
        assert receiver.received[1].at - asked < 0.5
    finally:
        deliverer.stop()


def test_deliveries_in_flight_are_bounded_and_connections_kept_alive(
        repo, db_url, receiver, sql) -> None:
    subscribe(repo, receiver.url)
    receiver.hold = threading.Event()  # every answer waits: sends pile up in flight
    deliverer = running(repo, db_url, webhook_poll_s=30, webhook_concurrency=4)
    try:
        finish_runs(repo, 30)
        wait_for(lambda: len(receiver.received) >= 4, 10, "4 deliveries in flight")
        time.sleep(0.5)
        assert len(receiver.received) == 4  # no fifth sender
        claimed = sql.execute("SELECT count(*) AS n FROM dagq.webhook_deliveries "
                              "WHERE attempts > 0").fetchone()["n"]
        assert 4 <= claimed <= 8  # claimed ahead of the senders: 2 x the concurrency
        receiver.hold.set()
        wait_for(lambda: len(repo.webhooks.list_deliveries("acme", status="succeeded")) == 30,
                 20, "every delivery")
    finally:
        deliverer.stop()
    assert len(receiver.received) == 30
    assert len({r.peer_port for r in receiver.received}) <= 4  # 4 connections, kept alive
    assert len({r.headers["dagq-delivery"] for r in receiver.received}) == 30


def test_a_stopped_deliverer_leaves_its_unsent_claims_due_again(
        repo, db_url, receiver, sql) -> None:
    subscribe(repo, receiver.url)
    receiver.hold = threading.Event()
    deliverer = running(repo, db_url, webhook_poll_s=30, webhook_concurrency=2)
    finish_runs(repo, 5)
    wait_for(lambda: len(receiver.received) >= 2, 10, "2 deliveries in flight")
    deliverer.stop(timeout=1.0)  # its claims are neither sent nor recorded
    receiver.hold.set()
    [row] = sql.execute("SELECT max(next_attempt_at) AS t FROM dagq.webhook_deliveries"
                        ).fetchall()
    counts = Sweeper(repo, settings()).webhooks(now=row["t"])
    assert counts["webhooks_delivered"] == 5
    assert {d.status for d in repo.webhooks.list_deliveries("acme")} == {"succeeded"}
