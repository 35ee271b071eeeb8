"""The webhook outbox (migration 029): the trigger on dagq.run_events writes one delivery
per matching subscription in the transaction of the state change (none if it rolls
back), for the subscribed event types only, for the subscription's tenant, workflow or
run only; a node waiting for a signal (a person) is an event, a timer is not."""

from __future__ import annotations

import psycopg
import pytest

from dagq.config import Settings
from dagq.errors import InvalidRequest
from dagq.service import webhooks as hooks
from dagq.store import Store
from tests.harness.drive import drive
from tests.harness.specs import spec

URL = "http://127.0.0.1:9/hook"  # never called here: only the rows are looked at
ALLOW = Settings(_env_file=None, http_allow="127.0.0.1")  # type: ignore[call-arg]


def subscribe(repo: Store, events: list[str], tenant: str = "acme", **extra) -> None:
    hooks.add_webhook(repo, ALLOW, tenant=tenant, url=URL, events=events, **extra)


def deliveries(sql) -> list[tuple[str, str]]:
    return [(r["event"], str(r["run_id"])) for r in sql.execute(
        "SELECT event, run_id FROM dagq.webhook_deliveries ORDER BY event_id").fetchall()]


def submit(repo: Store, nodes: dict, *, tenant: str = "acme", name: str = "wf") -> str:
    return str(repo.submissions.submit_run(tenant=tenant, spec=spec(nodes, name=name)).run_id)


def test_the_delivery_exists_iff_the_state_change_commits(repo, sql, db_url) -> None:
    subscribe(repo, ["run_cancelled"])
    run_id = submit(repo, {"a": {"executor": "builtin.noop"}})
    with psycopg.connect(db_url) as conn, conn.transaction(force_rollback=True):
        conn.execute("INSERT INTO dagq.run_events (run_id, type) "
                     "VALUES (%s, 'run_cancelled')", (run_id,))
        assert conn.execute("SELECT count(*) FROM dagq.webhook_deliveries"
                            ).fetchone()[0] == 1  # in the same transaction...
    assert deliveries(sql) == []  # ...and gone with its rollback
    repo.runs.cancel_run(run_id, "acme")  # the real state change, committed
    assert deliveries(sql) == [("run_cancelled", run_id)]


def test_only_subscribed_events_of_the_tenant_and_workflow(repo, sql) -> None:
    subscribe(repo, ["run_succeeded", "node_failed"], workflow="wanted")
    subscribe(repo, ["run_failed"], tenant="globex")
    wanted = submit(repo, {"a": {"executor": "builtin.noop"}}, name="wanted")
    submit(repo, {"a": {"executor": "builtin.noop"}}, name="other")
    submit(repo, {"a": {"executor": "builtin.noop"}}, tenant="umbrella", name="wanted")
    drive(repo)
    assert deliveries(sql) == [("run_succeeded", wanted)]  # no node_succeeded, no other's
    failing = submit(repo, {"a": {"executor": "builtin.noop", "max_attempts": 1}},
                     name="wanted")

    def boom(payload: dict) -> None:
        raise RuntimeError("boom")

    drive(repo, {"a": boom})
    # acme subscribed node_failed, not run_failed; globex's run_failed is not acme's run.
    assert deliveries(sql)[1:] == [("node_failed", failing)]
    tenants = {r["tenant"] for r in sql.execute("SELECT tenant FROM dagq.webhook_deliveries")}
    assert tenants == {"acme"}


def test_a_submit_callback_hears_its_own_run_only(repo, sql) -> None:
    mine = submit(repo, {"a": {"executor": "builtin.noop"}})
    other = submit(repo, {"a": {"executor": "builtin.noop"}})
    hooks.add_webhook(repo, ALLOW, tenant="acme", url=URL, events=["run_succeeded"],
                      run_id=mine)
    drive(repo)
    assert deliveries(sql) == [("run_succeeded", mine)] and other != mine
    assert repo.webhooks.list_webhooks("acme") == []  # callbacks are not subscriptions


def test_a_wait_for_a_person_is_an_event_a_timer_is_not(repo, sql) -> None:
    subscribe(repo, ["node_waiting"])
    person = submit(repo, {"approve": {"wait": {"signal": "approved"}}})
    submit(repo, {"pause": {"wait": {"seconds": 3600}}})
    assert deliveries(sql) == [("node_waiting", person)]
    [payload] = [r["payload"] for r in sql.execute(
        "SELECT payload FROM dagq.webhook_deliveries").fetchall()]
    assert payload["node_key"] == "approve"
    assert payload["data"]["wait"]["signal"] == "approved"


@pytest.mark.parametrize("events", [[], ["run_started"], ["run_succeeded", "nope"]])
def test_bad_events_are_refused_and_write_nothing(repo, sql, events) -> None:
    with pytest.raises(InvalidRequest):
        subscribe(repo, events)
    assert sql.execute("SELECT count(*) AS n FROM dagq.webhooks").fetchone()["n"] == 0
