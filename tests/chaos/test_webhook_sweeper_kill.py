"""A SIGKILLed sweeper loses no webhook delivery (issue 33): a real `python -m
dagq.sweeper` is killed while its POST is in flight (the receiver holds the answer); the
delivery stays claimed and unrecorded, and once its claim runs out (time through data:
`now`) another sweeper sends it again with the same delivery id."""

from __future__ import annotations

import threading

import pytest

from dagq.config import Settings
from dagq.service import webhooks as hooks
from dagq.sweeper.passes import Sweeper
from examples.webhook_receiver import verify
from tests.harness.drive import drive
from tests.harness.procs import wait_for
from tests.harness.receiver import Receiver
from tests.harness.specs import spec

pytestmark = pytest.mark.chaos
SECRET = "the-secret-of-this-test"


def test_a_sweeper_killed_mid_delivery_loses_nothing(fleet, repo, sql) -> None:
    settings = Settings(_env_file=None, http_allow="127.0.0.1")  # type: ignore[call-arg]
    with Receiver() as receiver:
        hooks.add_webhook(repo, settings, tenant="acme", url=receiver.url,
                          events=["run_succeeded"], secret=SECRET)
        repo.submissions.submit_run(tenant="acme",
                                    spec=spec({"a": {"executor": "builtin.noop"}}))
        drive(repo)
        receiver.hold = threading.Event()
        sweeper = fleet.start_sweeper(DAGQ_HTTP_ALLOW="127.0.0.1")
        wait_for(lambda: receiver.received, 60, "the sweeper's POST")
        sweeper.kill()  # SIGKILL, mid-attempt
        sweeper.wait()
        receiver.hold.set()
        [delivery] = repo.webhooks.list_deliveries("acme")
        shown = repo.webhooks.get_delivery(delivery.id, "acme")
        assert shown.status == "pending" and shown.attempts == 1 and shown.history == []
        assert not any(Sweeper(repo, settings).webhooks().values())  # still claimed
        counts = Sweeper(repo, settings).webhooks(now=shown.next_attempt_at)
        assert counts["webhooks_delivered"] == 1
        assert [r.headers["dagq-delivery"] for r in receiver.received] == [str(delivery.id)] * 2
        assert all(verify(SECRET, r.headers["dagq-signature"], r.body)
                   for r in receiver.received)
    done = repo.webhooks.get_delivery(delivery.id, "acme")
    assert done.status == "succeeded" and [a.attempt for a in done.history] == [2]
