"""The examples of issue 33 items 2 and 3 on real processes (API, workers, sweeper):
examples/ticket_triggers.py emits events through the API that start the subscribed
workflows, which workers run; examples/transactional_submit.py places orders whose
invoice runs exist iff the order committed, through dagq.submit_in and through the SQL
trigger calling dagq.submit (made a run by the sweeper)."""

from __future__ import annotations

import time

import psycopg
import pytest

from dagq import Client, service
from dagq.store import Store
from examples.ticket_triggers import WORKFLOWS, open_ticket
from examples.transactional_submit import (
    CREATE_ORDERS,
    CREATE_TRIGGER,
    INVOICE,
    place_order,
)
from tests.harness.e2e import start_api
from tests.harness.procs import WorkerFleet, wait_for, wait_for_run

pytestmark = pytest.mark.e2e


def test_ticket_triggers_example(fleet: WorkerFleet, repo: Store) -> None:
    url = start_api(fleet)
    fleet.start(threads=2)
    with Client(url, api_key=service.create_api_key(repo, "acme", admin=True)) as admin:
        for spec in WORKFLOWS:
            admin.register_workflow(spec)
    with Client(url, api_key=service.create_api_key(repo, "acme")) as client:
        urgent = open_ticket(client, "T-1", priority="high")
        assert [run.workflow for run in urgent.runs] == ["audit", "escalate"]
        assert open_ticket(client, "T-1", priority="high").runs == urgent.runs  # a retry
        calm = open_ticket(client, "T-2", priority="low")
        assert [run.workflow for run in calm.runs] == ["audit"]
        for run in (*urgent.runs, *calm.runs):
            assert wait_for_run(repo, run.run_id).status == "succeeded"
        assert {r.status for r in client.event(urgent.id).runs} == {"succeeded"}


def test_transactional_submit_example(fleet: WorkerFleet, repo: Store, sql,
                                      db_url: str) -> None:
    fleet.start(threads=2)
    fleet.start_sweeper()
    service.register_workflow(repo, INVOICE)
    with psycopg.connect(db_url) as conn:
        conn.execute(CREATE_ORDERS)
        conn.commit()
        placed = place_order(conn, order_id=1, total_cents=4200)
        with pytest.raises(psycopg.errors.UniqueViolation):
            place_order(conn, order_id=1, total_cents=1)  # the order fails: no second run
        conn.execute(CREATE_TRIGGER)
        conn.commit()
        with conn.transaction():
            conn.execute("INSERT INTO orders VALUES (2, 990)")
        with pytest.raises(RuntimeError), conn.transaction():
            conn.execute("INSERT INTO orders VALUES (3, 10)")
            raise RuntimeError("payment declined")  # rolled back: no order 3, no run
    run = wait_for_run(repo, placed.run_id)
    assert run.status == "succeeded" and run.metadata == {"order": "1"}
    by_trigger = wait_for(lambda: sql.execute(
        "SELECT id FROM dagq.runs WHERE event_key = 'order-2-invoice'").fetchone(), 30,
        "the sweeper to make order 2's run")
    assert wait_for_run(repo, by_trigger["id"]).status == "succeeded"
    sql.execute("INSERT INTO orders VALUES (4, 1)")  # committed now (autocommit)
    started = time.monotonic()
    wait_for(lambda: sql.execute("SELECT 1 FROM dagq.runs WHERE event_key = "
                                 "'order-4-invoice'").fetchone(), 30, "order 4's run")
    print(f"\ndagq.submit commit -> run made by the sweeper: "
          f"{time.monotonic() - started:.2f}s")
    keys = [r["event_key"] for r in sql.execute(
        "SELECT event_key FROM dagq.runs ORDER BY event_key").fetchall()]
    assert keys == ["order-1-invoice", "order-2-invoice", "order-4-invoice"]
    assert sql.execute("SELECT count(*) AS n FROM dagq.submit_requests").fetchone()["n"] == 0
