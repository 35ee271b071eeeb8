"""The SQL function dagq.submit (migration 033) and the sweeper's `submits` pass: a
request exists iff the caller's transaction commits, the pass makes each one run
(the request's id is the run's) through the normal submit path, exactly once; bad
arguments raise in the caller's SQL and write nothing; refusals end failed (or are
retried, for a quota) with their error."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from dagq import service
from dagq.config import Settings
from dagq.service.workflows import register_workflow
from dagq.store.submit_requests import MAX_ATTEMPTS
from dagq.sweeper.passes import Sweeper

FLOW = {"name": "invoice", "nodes": {"bill": {"executor": "builtin.echo"}}}


def requests(sql) -> list[dict]:
    return sql.execute("SELECT id, status, attempts, error FROM dagq.submit_requests "
                       "ORDER BY created_at").fetchall()


def count(sql, table: str) -> int:
    return sql.execute(f"SELECT count(*) AS n FROM dagq.{table}").fetchone()["n"]


def test_a_committed_call_becomes_one_run(repo, sql, db_url) -> None:
    register_workflow(repo, FLOW)
    with psycopg.connect(db_url) as app:
        run_id = app.execute(
            "SELECT dagq.submit('invoice', '{\"n\": 1}', event_key => 'inv-1', "
            "tenant => 'acme', metadata => '{\"invoice\": \"1\"}')").fetchone()[0]
        assert requests(sql) == []  # not before the commit
        app.commit()
        app.execute("SELECT dagq.submit('invoice', '{\"n\": 2}')")
        app.rollback()  # never a request, never a run
    sweeper = Sweeper(repo, Settings())
    assert sweeper.submits() == {"submitted": 1, "submit_retried": 0, "submit_failed": 0}
    assert sweeper.submits()["submitted"] == 0  # nothing left: nothing twice
    run = service.get_run(repo, run_id, tenant="acme")
    assert (run.inputs, run.metadata, run.status) == ({"n": 1}, {"invoice": "1"}, "queued")
    assert count(sql, "runs") == 1 and requests(sql) == []


def test_from_a_trigger_and_by_event_key(repo, sql, db_url) -> None:
    register_workflow(repo, FLOW)
    with psycopg.connect(db_url) as app:
        app.execute("""
            CREATE TABLE orders (id int PRIMARY KEY, total numeric);
            CREATE FUNCTION order_placed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM dagq.submit('invoice', jsonb_build_object('order', NEW.id),
                                    event_key => 'order-' || NEW.id);
                RETURN NEW;
            END $$;
            CREATE TRIGGER orders_invoice AFTER INSERT ON orders
                FOR EACH ROW EXECUTE FUNCTION order_placed();""")
        app.execute("INSERT INTO orders VALUES (1, 10), (2, 20)")
        app.commit()
        # the same event key with the same inputs again: the same run
        app.execute("SELECT dagq.submit('invoice', '{\"order\": 1}', event_key => 'order-1')")
        app.commit()
    assert Sweeper(repo, Settings()).submits()["submitted"] == 3
    runs = sql.execute("SELECT event_key, inputs FROM dagq.runs ORDER BY event_key").fetchall()
    assert [(r["event_key"], r["inputs"]) for r in runs] == [
        ("order-1", {"order": 1}), ("order-2", {"order": 2})]


@pytest.mark.parametrize("call, says", [
    ("dagq.submit('nosuch')", "workflow nosuch is not registered"),
    ("dagq.submit(NULL)", "workflow <NULL> is not registered"),
    ("dagq.submit('invoice', '[1]')", "inputs must be a JSON object"),
    ("dagq.submit('invoice', metadata => '\"x\"')", "metadata must be a JSON object"),
    ("dagq.submit('invoice', event_key => 'dagq.x')", "event_key needs 1 to 512"),
    ("dagq.submit('invoice', event_key => '')", "event_key needs 1 to 512"),
    ("dagq.submit('invoice', tenant => '')", "a tenant name needs 1 to 200"),
])
def test_bad_arguments_raise_and_write_nothing(repo, sql, db_url, call, says) -> None:
    register_workflow(repo, FLOW)
    with psycopg.connect(db_url) as app:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=says):
            app.execute(f"SELECT {call}")
        app.rollback()
    assert requests(sql) == []


def test_refusals_end_failed_or_wait_for_their_quota(repo, sql) -> None:
    register_workflow(repo, FLOW)
    service.set_tenant(repo, "tight", max_queued_runs=1)
    service.submit(repo, tenant="t", workflow="invoice", inputs={"a": 1}, event_key="k")
    sql.execute("SELECT dagq.submit('invoice', '{\"a\": 2}', event_key => 'k', tenant => 't')")
    sql.execute("SELECT dagq.submit('invoice', tenant => 'tight')")
    sql.execute("SELECT dagq.submit('invoice', tenant => 'tight')")
    counts = Sweeper(repo, Settings()).submits()
    assert counts == {"submitted": 1, "submit_retried": 1, "submit_failed": 1}
    left = {r["status"]: r for r in requests(sql)}
    assert left["failed"]["error"]["code"] == "conflict"
    assert left["pending"]["error"]["code"] == "quota_exceeded"
    assert count(sql, "runs") == 2
    sql.execute("UPDATE dagq.runs SET status = 'running' WHERE tenant = 'tight'")
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert Sweeper(repo, Settings()).submits(later)["submitted"] == 1
    assert [r["status"] for r in requests(sql)] == ["failed"]
    uuid.UUID(str(left["pending"]["id"]))


def test_prune_keeps_events_with_runs_and_recent_failures(repo, sql) -> None:
    from dagq.service.triggers import emit

    register_workflow(repo, {**FLOW, "triggers": [{"event": "e"}]})
    kept = emit(repo, tenant="t", name="e", payload={})  # its run stays
    gone = emit(repo, tenant="t", name="e", payload={"x": 1})
    lonely = emit(repo, tenant="t", name="nobody.listens", payload={})
    sql.execute("DELETE FROM dagq.runs WHERE id = %s", (gone.runs[0].run_id,))
    sql.execute("SELECT dagq.submit('invoice', event_key => 'k2', inputs => '{\"a\": 1}')")
    service.submit(repo, tenant="default", workflow="invoice", inputs={"a": 2},
                   event_key="k2")
    sweeper = Sweeper(repo, Settings())
    assert sweeper.submits()["submit_failed"] == 1
    counts = sweeper.prune()
    assert (counts["pruned_events"], counts["pruned_submit_requests"]) == (0, 0)  # recent
    sql.execute("UPDATE dagq.events SET created_at = now() - interval '8 days'")
    sql.execute("UPDATE dagq.submit_requests SET created_at = now() - interval '8 days'")
    counts = sweeper.prune()
    assert (counts["pruned_events"], counts["pruned_submit_requests"]) == (2, 1)
    left = {r["id"] for r in sql.execute("SELECT id FROM dagq.events").fetchall()}
    assert left == {kept.id} and lonely.id not in left


def test_a_request_refused_by_a_full_queue_waits_longer_each_time(repo, sql) -> None:
    """A full queue's refusal says retry in 1 s: retried every second, a committed
    request failed for good after 20 s of backlog. Its waits double (up to a minute), so
    its 20 attempts span about 15 minutes."""
    register_workflow(repo, FLOW)
    service.set_tenant(repo, "tight", max_queued_runs=1)
    service.submit(repo, tenant="tight", workflow="invoice")  # the queue is full
    sql.execute("SELECT dagq.submit('invoice', tenant => 'tight')")
    sweeper, now, waits = Sweeper(repo, Settings()), datetime.now(UTC), []
    for _ in range(MAX_ATTEMPTS - 1):
        assert sweeper.submits(now) == {"submitted": 0, "submit_retried": 1,
                                        "submit_failed": 0}
        [row] = sql.execute("SELECT next_attempt_at FROM dagq.submit_requests").fetchall()
        waits.append((row["next_attempt_at"] - now).total_seconds())
        now = row["next_attempt_at"]
    assert waits[:7] == [1, 2, 4, 8, 16, 32, 60] and set(waits[6:]) == {60}
    assert sum(waits) > 14 * 60
    assert sweeper.submits(now)["submit_failed"] == 1  # the 20th refusal: kept failed
