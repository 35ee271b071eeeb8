"""The webhooks pass (issue 33): a run's end reaches a real receiver on 127.0.0.1, signed
(checked with examples/webhook_receiver.verify); a 500 is retried with back-off until the
configured attempts, then `failed`; a redeliver sends it again; a claim whose sweeper died
is due again once it runs out. Time moves through data (`now`, next_attempt_at)."""

from __future__ import annotations

import threading
from datetime import timedelta
from http.server import ThreadingHTTPServer

import pytest

from dagq import service
from dagq.config import Settings
from dagq.service import webhooks as hooks
from dagq.store import Store
from dagq.sweeper.passes import Sweeper
from dagq.sweeper.webhooks import CLAIM_S
from examples.webhook_receiver import handler, verify
from tests.harness.drive import drive
from tests.harness.receiver import Receiver
from tests.harness.specs import spec

SECRET = "a-test-secret-of-some-length"


@pytest.fixture
def settings() -> Settings:
    return Settings(_env_file=None, http_allow="127.0.0.1",  # type: ignore[call-arg]
                    webhook_max_attempts=3)


@pytest.fixture
def receiver() -> Receiver:
    with Receiver() as r:
        yield r


def finished_run(repo: Store, *, fail: bool = False, tenant: str = "acme") -> str:
    wf = spec({"a": {"executor": "builtin.noop", "max_attempts": 1}})
    run_id = repo.submissions.submit_run(tenant=tenant, spec=wf).run_id
    drive(repo, {"a": _boom} if fail else None)
    assert repo.runs.get_run(run_id).status == ("failed" if fail else "succeeded")
    return str(run_id)


def _boom(payload: dict) -> None:
    raise RuntimeError("boom")


def subscribe(repo: Store, settings: Settings, url: str, **extra) -> None:
    extra.setdefault("events", ["run_succeeded", "run_failed"])
    hooks.add_webhook(repo, settings, tenant="acme", url=url, secret=SECRET, **extra)


def test_a_run_end_is_delivered_signed_once(repo, settings, receiver, sql) -> None:
    subscribe(repo, settings, receiver.url)
    run_id = finished_run(repo)
    counts = Sweeper(repo, settings).webhooks()
    assert counts["webhooks_delivered"] == 1
    [got] = receiver.received
    assert verify(SECRET, got.headers["dagq-signature"], got.body)
    assert not verify("another-secret-entirely", got.headers["dagq-signature"], got.body)
    assert not verify(SECRET, got.headers["dagq-signature"], got.body + b" ")
    event = got.event
    assert event["event"] == "run_succeeded" and event["run_id"] == run_id
    assert event["workflow"] == "wf" and event["tenant"] == "acme"
    assert got.headers["dagq-delivery"] == event["delivery_id"]
    assert got.headers["dagq-event"] == "run_succeeded"
    [delivery] = repo.webhooks.list_deliveries("acme")
    shown = repo.webhooks.get_delivery(delivery.id, "acme")
    assert shown.status == "succeeded" and shown.attempts == 1 and shown.finished_at
    [attempt] = shown.history
    assert attempt.status_code == 200 and attempt.response == "status 200"
    assert attempt.latency_ms >= 0 and attempt.error is None
    assert not any(Sweeper(repo, settings).webhooks().values())  # sent once


def test_the_replay_window_refuses_an_old_signature() -> None:
    header = hooks.sign(SECRET, 1_000_000, b"{}")
    assert verify(SECRET, header, b"{}", now=1_000_000 + 299)
    assert not verify(SECRET, header, b"{}", now=1_000_000 + 301)
    assert not verify(SECRET, "t=x,v1=00", b"{}") and not verify(SECRET, "", b"{}")


def test_a_500_is_retried_with_back_off_then_failed_then_redelivered(
        repo, settings, receiver) -> None:
    subscribe(repo, settings, receiver.url)
    finished_run(repo, fail=True)
    receiver.always = 500
    sweeper = Sweeper(repo, settings)
    assert sweeper.webhooks()["webhooks_retried"] == 1
    [delivery] = repo.webhooks.list_deliveries("acme")
    assert delivery.status == "pending" and delivery.attempts == 1
    first_retry = delivery.next_attempt_at - delivery.created_at
    assert timedelta(seconds=4) < first_retry < timedelta(seconds=60)  # backed off
    assert not any(sweeper.webhooks().values())  # not due yet
    for expected in ("webhooks_retried", "webhooks_failed"):
        now = repo.webhooks.get_delivery(delivery.id, None).next_attempt_at
        assert sweeper.webhooks(now=now)[expected] == 1
    failed = repo.webhooks.get_delivery(delivery.id, "acme")
    assert failed.status == "failed" and failed.attempts == 3
    assert [a.status_code for a in failed.history] == [500, 500, 500]
    assert failed.last_error == "HTTP 500"
    assert [d.id for d in repo.webhooks.list_deliveries("acme", status="failed")] == [
        delivery.id]
    # The same delivery id on every attempt: the receiver dedupes on it.
    assert len({r.headers["dagq-delivery"] for r in receiver.received}) == 1
    receiver.always = None
    service.webhooks.redeliver(repo, delivery.id, "acme")
    assert sweeper.webhooks()["webhooks_delivered"] == 1
    done = repo.webhooks.get_delivery(delivery.id, "acme")
    assert done.status == "succeeded" and [a.status_code for a in done.history][-1] == 200


def test_a_delivery_is_given_up_24_hours_after_its_event(repo, receiver) -> None:
    settings = Settings(_env_file=None, http_allow="127.0.0.1")  # type: ignore[call-arg]
    subscribe(repo, settings, receiver.url)
    finished_run(repo)
    receiver.always = 503
    [delivery] = repo.webhooks.list_deliveries("acme")
    late = delivery.created_at + timedelta(hours=24)  # a retry would be later still
    assert Sweeper(repo, settings).webhooks(now=late)["webhooks_failed"] == 1


def test_a_refused_address_is_an_attempt_not_a_crash(repo, receiver) -> None:
    allowed = Settings(_env_file=None, http_allow="127.0.0.1")  # type: ignore[call-arg]
    subscribe(repo, allowed, receiver.url)
    finished_run(repo)
    strict = Settings(_env_file=None)  # type: ignore[call-arg]  # loopback refused now
    assert Sweeper(repo, strict).webhooks()["webhooks_retried"] == 1
    [delivery] = repo.webhooks.list_deliveries("acme")
    [attempt] = repo.webhooks.get_delivery(delivery.id, None).history
    assert attempt.status_code is None and "loopback" in (attempt.error or "")
    assert receiver.received == []


def test_a_claim_whose_sweeper_died_is_due_again(repo, settings, receiver, sql) -> None:
    subscribe(repo, settings, receiver.url)
    finished_run(repo)
    # A sweeper claims the delivery and is SIGKILLed before it sends or records it.
    [claim] = repo.webhooks.claim_deliveries(limit=10, claim_s=CLAIM_S)
    sweeper = Sweeper(repo, settings)
    assert not any(sweeper.webhooks().values())  # claimed: no other sweeper sends it
    now = sql.execute("SELECT now() + make_interval(secs => %s) AS t",
                      (CLAIM_S + 1,)).fetchone()["t"]
    assert sweeper.webhooks(now=now)["webhooks_delivered"] == 1
    done = repo.webhooks.get_delivery(claim["id"], "acme")
    assert done.status == "succeeded" and done.attempts == 2
    assert [a.attempt for a in done.history] == [2]  # the dead claim recorded nothing
    assert len(receiver.received) == 1


def test_a_deleted_subscription_fails_its_pending_deliveries(repo, settings, receiver) -> None:
    subscribe(repo, settings, receiver.url)
    finished_run(repo)
    [webhook] = repo.webhooks.list_webhooks("acme")
    hooks.remove_webhook(repo, webhook.id, "acme")
    [delivery] = repo.webhooks.list_deliveries("acme")
    assert delivery.status == "failed" and "deleted" in (delivery.last_error or "")
    hooks.redeliver(repo, delivery.id, "acme")  # nothing left to send it to
    assert Sweeper(repo, settings).webhooks()["webhooks_failed"] == 1
    assert receiver.received == []


def test_prune_removes_old_finished_deliveries_and_gone_runs_callbacks(
        repo, settings, receiver, sql) -> None:
    subscribe(repo, settings, receiver.url)
    run_id = finished_run(repo)
    hooks.add_webhook(repo, settings, tenant="acme", url=receiver.url,
                      events=["run_failed"], run_id=run_id)
    sweeper = Sweeper(repo, settings)
    sweeper.webhooks()
    assert sweeper.prune()["pruned_deliveries"] == 0  # recent: kept
    sql.execute("UPDATE dagq.webhook_deliveries SET finished_at = now() - interval '8 days'")
    sql.execute("UPDATE dagq.webhooks SET created_at = now() - interval '8 days'")
    sql.execute("UPDATE dagq.runs SET finished_at = now() - interval '8 days'")
    assert sweeper.prune() == {"pruned_runs": 1, "pruned_deliveries": 1,
                              "pruned_events": 0, "pruned_submit_requests": 0}
    counts = sql.execute(
        "SELECT (SELECT count(*) FROM dagq.webhook_attempts) AS attempts, "
        "(SELECT count(*) FROM dagq.webhooks WHERE run_id IS NOT NULL) AS callbacks, "
        "(SELECT count(*) FROM dagq.webhooks WHERE run_id IS NULL) AS subscriptions"
    ).fetchone()
    assert counts == {"attempts": 0, "callbacks": 0, "subscriptions": 1}


def test_the_example_receiver_verifies_and_dedupes(repo, settings, capsys) -> None:
    """examples/webhook_receiver.py as a platform would run it: it accepts dagq's signed
    delivery (204), prints it once, and a redelivery of the same id is not printed again."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(SECRET, set()))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        subscribe(repo, settings, f"http://127.0.0.1:{server.server_address[1]}/")
        run_id = finished_run(repo)
        sweeper = Sweeper(repo, settings)
        assert sweeper.webhooks()["webhooks_delivered"] == 1
        [delivery] = repo.webhooks.list_deliveries("acme")
        hooks.redeliver(repo, delivery.id, "acme")
        assert sweeper.webhooks()["webhooks_delivered"] == 1
        hooks.add_webhook(repo, settings, tenant="acme", events=["run_succeeded"],
                          url=f"http://127.0.0.1:{server.server_address[1]}/",
                          secret="not-the-receivers-secret")
        finished_run(repo)
        counts = sweeper.webhooks()  # the receiver refuses the wrong signature (401)
        assert counts["webhooks_delivered"] == 1 and counts["webhooks_retried"] == 1
    finally:
        server.shutdown()
        server.server_close()
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"run_succeeded {run_id}" and len(printed) == 2


def test_a_large_reply_is_kept_as_an_excerpt_and_no_reply_is_retried(
        repo, settings, receiver) -> None:
    subscribe(repo, settings, receiver.url)
    finished_run(repo)
    receiver.reply = b"x" * 5_000_000  # a 2xx is a success, whatever it says
    assert Sweeper(repo, settings).webhooks()["webhooks_delivered"] == 1
    [delivery] = repo.webhooks.list_deliveries("acme")
    [attempt] = repo.webhooks.get_delivery(delivery.id, None).history
    assert attempt.status_code == 200 and attempt.response == "x" * 500
    # Nobody listens on the port any more: no reply, an attempt with its error, retried.
    receiver.reply = None
    dead = Receiver()
    dead.server.server_close()
    subscribe(repo, settings, dead.url)
    finished_run(repo)
    assert Sweeper(repo, settings).webhooks()["webhooks_retried"] == 1
    [pending] = repo.webhooks.list_deliveries("acme", status="pending")
    [attempt] = repo.webhooks.get_delivery(pending.id, None).history
    assert attempt.status_code is None and "ConnectError" in (attempt.error or "")
