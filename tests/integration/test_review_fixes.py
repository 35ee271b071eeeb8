"""Fixes from the review of reruns, concurrency keys and the Dramatiq work: each test
failed before its fix."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from typing import Any

import dramatiq
import psycopg
import pytest

from dagq import service
from dagq.config import Settings
from dagq.errors import Conflict, InvalidRequest
from dagq.models import SubmitResult
from dagq.spec.workflow import Concurrency, parse_spec
from dagq.store import Store
from dagq.store.new_runs import RunTemplate
from dagq.sweeper.passes import Sweeper
from dagq.workers.broker import PostgresBroker
from tests.helpers import drive
from tests.integration.test_api_helpers import Api
from tests.integration.test_concurrency_keys import chat
from tests.integration.test_dead_letters import backdate, node, send


def test_a_concurrency_key_value_too_long_is_a_422_that_writes_nothing(
        db_url: str, sql) -> None:
    """An uncompressible 16 kB value made the key's index row too large: Postgres refused
    the insert and the API answered 503 database_unavailable (a 5xx for bad input)."""
    big = secrets.token_hex(8000)
    with Api(db_url) as api:
        response = api.client.post("/v1/runs", json={
            "workflow": chat(), "inputs": {"conversation_id": big}}, headers=api.acme)
        assert response.status_code == 422, response.text
        assert "concurrency key" in response.json()["error"]["message"]
        batch = api.client.post("/v1/runs/batch", json={"runs": [
            {"workflow": chat(), "inputs": {"conversation_id": big}},
            {"workflow": chat(), "inputs": {"conversation_id": "ok"}}]}, headers=api.acme)
        assert batch.status_code == 200, batch.text
        refused, written = batch.json()["results"]
        assert refused["error"]["code"] == "invalid_request"
        assert written["status"] == "queued"  # the rest of the batch is written
        assert sql.execute("SELECT count(*) AS n FROM dagq.runs ").fetchone()["n"] == 1
        with pytest.raises(InvalidRequest, match="concurrency key"):
            service.submit(api.repo, tenant="acme", workflow=chat(),
                           inputs={"conversation_id": big})


def _keyed_finished_run(repo: Store, on_limit: str) -> Any:
    """A finished run of a keyed workflow (limit 1) and an open one of the same key."""
    done = service.submit(repo, tenant="acme", workflow=chat(on_limit),
                          inputs={"conversation_id": "c1"}).run_id
    drive(repo)
    assert repo.runs.get_run(done).status == "succeeded"
    live = service.submit(repo, tenant="acme", workflow=chat(on_limit),
                          inputs={"conversation_id": "c1"}).run_id
    return done, live


def test_a_rerun_of_a_keyed_run_holds_a_slot_of_its_key(repo: Store, sql) -> None:
    """A rerun was written without its concurrency key: it ran beside the key's open
    run (limit 1), unseen by the key's later submits."""
    done, live = _keyed_finished_run(repo, "queue")
    before = sql.execute("SELECT count(*) AS n FROM dagq.runs").fetchone()["n"]
    with pytest.raises(Conflict, match="concurrency"):
        repo.reruns.rerun_run(done, "acme", from_=["after"])
    assert sql.execute("SELECT count(*) AS n FROM dagq.runs").fetchone()["n"] == before
    repo.runs.cancel_run(live, "acme")
    rerun = repo.reruns.rerun_run(done, "acme", from_=["after"]).run_id
    view = repo.runs.get_run(rerun)
    assert view.concurrency_key == "inputs.conversation_id=c1"
    assert not view.concurrency_waiting
    # the rerun holds the slot: the next submit of the key waits for it
    later = service.submit(repo, tenant="acme", workflow=chat(),
                           inputs={"conversation_id": "c1"}).run_id
    assert repo.runs.get_run(later).concurrency_waiting
    drive(repo)  # the rerun ends, then the waiting run gets the slot and runs
    assert repo.runs.get_run(rerun).status == "succeeded"
    assert repo.runs.get_run(later).status == "succeeded"
    # new inputs without the key's value: no limit
    free = repo.reruns.rerun_run(done, "acme", from_=["reply"], inputs={"other": 1}).run_id
    assert repo.runs.get_run(free).concurrency_key is None


def test_a_cancel_running_rerun_replaces_the_open_run_of_its_key(repo: Store) -> None:
    done, live = _keyed_finished_run(repo, "cancel_running")
    rerun = repo.reruns.rerun_run(done, "acme", from_=["after"]).run_id
    assert repo.runs.get_run(live).status == "cancelled"
    assert repo.runs.get_run(rerun).concurrency_key == "inputs.conversation_id=c1"


def test_a_message_whose_worker_arrived_after_the_candidates_read_is_not_dead_lettered(
        repo: Store, sql) -> None:
    """The sweeper read its candidates in one transaction and failed each in another
    without looking again: a worker serving the actor that registered in between (a
    deploy's new worker) saw its message dead-lettered."""
    producer = PostgresBroker(repo, worker_id="producer")
    message = send(producer, "late_actor")
    backdate(sql, message, 4000)
    (candidate,) = repo.messages._dead_letter_candidates(600, None, 10)
    worker = PostgresBroker(repo, worker_id="w-late")
    dramatiq.actor(broker=worker, actor_name="late_actor", queue_name="dl")(lambda: None)
    repo.fleet.register_worker(worker="w-late", hostname="h", pid=1, queues=["dl"], threads=1,
                               executors=[], actors=sorted(worker.actors))
    assert repo.messages._dead_letter_one(candidate, 600) == "busy"
    assert node(sql, message)["status"] == "queued"
    repo.fleet.stop_worker("w-late")  # gone again, long ago: now it is dead-lettered
    sql.execute("UPDATE dagq.workers SET heartbeat_at = now() - interval '601 s' "
                "WHERE id = 'w-late'")
    assert repo.messages._dead_letter_one(candidate, 600) == "failed"


def test_a_cancel_running_submit_retried_after_its_commit_does_not_cancel_itself(
        repo: Store) -> None:
    """The group commit retries its transaction on a transient error, with the same run
    ids: when the first try had committed (the error came with the commit's answer), the
    retry's `cancel_running` found its own run open and cancelled it."""
    template = RunTemplate.of(parse_spec(chat("cancel_running")))
    run = template.new_run(tenant="acme", version=None, latest=False, fingerprint="f",
                           event_key=None, priority=0, inputs={"conversation_id": "c1"},
                           deadline_s=None)
    (first,) = repo.submissions.submit_runs([run])
    assert first.status == "queued"
    (again,) = repo.submissions.submit_runs([run])  # the retry of the same transaction
    assert (again.run_id, again.status) == (run.id, "queued")  # its own row, found
    assert repo.runs.get_run(run.id).status == "queued"


def test_a_cancel_running_rerun_retried_after_its_commit_keeps_its_run(repo: Store) -> None:
    done, live = _keyed_finished_run(repo, "cancel_running")
    new_id = uuid.uuid4()
    first = repo.reruns._rerun(new_id, done, "acme", ["after"], None, None)
    again = repo.reruns._rerun(new_id, done, "acme", ["after"], None, None)  # the retry
    assert first.run_id == again.run_id == new_id
    assert repo.runs.get_run(live).status == "cancelled"
    assert repo.runs.get_run(new_id).status == "running"


def test_a_retried_run_that_was_cancelled_waiting_is_not_shown_waiting(repo: Store) -> None:
    """A run cancelled while it waited for a slot kept `concurrency_waiting`; retried, it
    ran (its roots queued) while shown, and counted, as waiting for a slot."""
    holder = service.submit(repo, tenant="acme", workflow=chat(),
                            inputs={"conversation_id": "c1"}).run_id
    waiting = service.submit(repo, tenant="acme", workflow=chat(),
                             inputs={"conversation_id": "c1"}).run_id
    assert repo.runs.get_run(waiting).concurrency_waiting
    repo.runs.cancel_run(waiting, "acme")
    repo.runs.cancel_run(holder, "acme")
    assert repo.runs.retry_run(waiting, "acme") == "running"
    view = repo.runs.get_run(waiting)
    assert {n.status for n in view.nodes if n.key == "reply"} == {"queued"}
    assert not view.concurrency_waiting
    drive(repo)
    assert repo.runs.get_run(waiting).status == "succeeded"


def test_a_backlog_is_not_dead_lettered_in_a_workers_restart(repo: Store, sql) -> None:
    """Dead-lettering asked only "queued this long, and no live worker now": a backlog
    an hour old of a served actor was failed whole if the sweeper ran in the seconds
    between its only worker stopping and the next one registering."""
    producer = PostgresBroker(repo, worker_id="producer")
    message = send(producer, "busy_actor")
    backdate(sql, message, 4000)  # a long backlog: served, but slowly
    repo.fleet.register_worker(worker="w-old", hostname="h", pid=1, queues=["dl"], threads=1,
                               executors=[], actors=["busy_actor"])
    sweeper = Sweeper(repo, Settings(dead_letter_after_s=600))
    assert sweeper.dead_letters() == {"dead_lettered": 0}
    repo.fleet.stop_worker("w-old")  # a restart: the next worker is not up yet
    assert sweeper.dead_letters() == {"dead_lettered": 0}
    assert node(sql, message)["status"] == "queued"
    # nobody has served it for longer than the bound: now it is dead-lettered
    sql.execute("UPDATE dagq.workers SET heartbeat_at = now() - interval '601 s' "
                "WHERE id = 'w-old'")
    assert sweeper.dead_letters() == {"dead_lettered": 1}


def test_a_rerun_keeps_the_concurrency_key_its_original_was_submitted_with(
        repo: Store) -> None:
    plain = {"name": "plain", "nodes": {"a": {"executor": "builtin.noop"},
                                        "b": {"executor": "builtin.noop",
                                              "depends_on": ["a"]}}}
    over = Concurrency(key="inputs.conversation_id", limit=1)
    done = service.submit(repo, tenant="acme", workflow=plain, concurrency=over,
                          inputs={"conversation_id": "c7"}).run_id
    drive(repo)
    open_one = service.submit(repo, tenant="acme", workflow=chat(),
                              inputs={"conversation_id": "c7"}).run_id
    with pytest.raises(Conflict, match="concurrency"):
        repo.reruns.rerun_run(done, "acme", from_=["b"])
    repo.runs.cancel_run(open_one, "acme")
    rerun = repo.reruns.rerun_run(done, "acme", from_=["b"]).run_id
    assert repo.runs.get_run(rerun).concurrency_key == "inputs.conversation_id=c7"


def test_a_slot_planned_for_a_run_not_written_goes_to_the_next_waiting_run(
        repo: Store) -> None:
    """A group's keyed runs are planned before the insert: a run given the key's free
    slot but then not written (stale: a newer workflow version came; or its event key
    was taken meanwhile) left the group's next run of the key waiting with no run
    holding a slot, until the sweeper's safety net."""
    v1 = parse_spec(chat())
    repo.workflows.register_workflow(v1)
    repo.workflows.register_workflow(parse_spec({**chat(), "fail_fast": False}))  # version 2
    template = RunTemplate.of(v1)

    def new(latest: bool) -> Any:
        return template.new_run(tenant="acme", version=1, latest=latest, fingerprint="f",
                                event_key=None, priority=0,
                                inputs={"conversation_id": "c1"}, deadline_s=None)

    stale, pinned = new(True), new(False)
    outcomes = repo.submissions.submit_runs([stale, pinned])
    assert not isinstance(outcomes[0], SubmitResult)  # stale: not written
    assert outcomes[1].status == "queued"
    view = repo.runs.get_run(pinned.id)
    assert not view.concurrency_waiting  # it holds the slot at once
    assert {n.status for n in view.nodes if n.key == "reply"} == {"queued"}


def _two_keys_hash_order_unlike_name_order(sql) -> tuple[str, str]:
    """Conversation ids a < b by key name whose lock hashes order them b, a."""
    rows = sql.execute(
        "SELECT c, hashtext('acme' || E'\\n' || 'inputs.conversation_id=' || c) AS h "
        "FROM unnest(ARRAY['k0','k1','k2','k3','k4','k5','k6','k7','k8','k9']) AS c"
    ).fetchall()
    by_hash = {row["c"]: row["h"] for row in rows}
    for a in sorted(by_hash):
        for b in sorted(by_hash):
            if a < b and by_hash[b] < by_hash[a]:
                return a, b
    raise AssertionError("no such pair")


def test_cancel_running_takes_its_keys_locks_in_the_order_every_submit_does(
        repo: Store, sql, db_url: str) -> None:
    """A cancel_running group cancelled the open runs of its keys in key-name order, each
    cancel taking that key's lock (the run-end trigger); every other submit locks keys in
    lock-hash order: two such groups could deadlock. Seen here: the group waits for the
    hash-first key's lock while already holding the other's."""
    first, second = _two_keys_hash_order_unlike_name_order(sql)  # hash order: second first
    for conv in (first, second):
        service.submit(repo, tenant="acme", workflow=chat(), inputs={"conversation_id": conv})
    template = RunTemplate.of(parse_spec(chat("cancel_running")))
    runs = [template.new_run(tenant="acme", version=None, latest=False, fingerprint="f",
                             event_key=None, priority=0, inputs={"conversation_id": conv},
                             deadline_s=None) for conv in (first, second)]
    with psycopg.connect(db_url) as holder:
        holder.execute("SELECT dagq.concurrency_lock('acme', %s)",
                       (f"inputs.conversation_id={second}",))
        done: list[Any] = []
        thread = threading.Thread(target=lambda: done.append(repo.submissions.submit_runs(runs)))
        thread.start()
        waiter = None
        for _ in range(200):
            waiter = sql.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' "
                                 "AND NOT granted").fetchone()
            if waiter:
                break
            time.sleep(0.02)
        assert waiter is not None, "the group never waited for the held key"
        held = sql.execute("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' "
                           "AND granted AND pid = %s", (waiter["pid"],)).fetchone()["n"]
        holder.commit()
        thread.join(10)
    assert held == 0, "it held another key's lock while waiting (out of order)"
    assert [o.status for o in done[0]] == ["queued", "queued"]


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
