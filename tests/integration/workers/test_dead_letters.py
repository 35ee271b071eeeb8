"""Plain Dramatiq messages for an actor no live worker serves (issue 19 item 5): they
show in dagq.queue_depth, a worker warns of each actor once, and the sweeper fails them
once they waited DAGQ_DEAD_LETTER_AFTER_S (time through data: available_at backdated)."""

from __future__ import annotations

import logging

import dramatiq

from dagq.config import Settings
from dagq.store import Store
from dagq.sweeper.passes import Sweeper
from dagq.workers.broker import PostgresBroker
from dagq.workers.leases import LeaseBook
from dagq.workers.supervisor import Supervisor


def send(broker: PostgresBroker, name: str):
    actor = dramatiq.actor(broker=broker, actor_name=name, queue_name="dl")(lambda: None)
    return actor.send()


def node(sql, message):
    return sql.execute(
        "SELECT t.*, r.status AS run_status FROM dagq.node_tasks t JOIN dagq.runs r ON "
        "r.id = t.run_id WHERE r.event_key = %s", (message.message_id,)).fetchone()


def backdate(sql, message, seconds: float) -> None:
    sql.execute("UPDATE dagq.node_tasks t SET available_at = now() - make_interval(secs "
                "=> %s) FROM dagq.runs r WHERE r.id = t.run_id AND r.event_key = %s",
                (seconds, message.message_id))


def test_unserved_messages_are_visible_warned_once_and_dead_lettered(
        repo, sql, caplog) -> None:
    producer = PostgresBroker(repo, worker_id="producer")
    ghost, served = send(producer, "ghost"), send(producer, "served_actor")
    # A live worker serving queue dl with served_actor (and not ghost).
    worker = PostgresBroker(repo, worker_id="w-dl")
    dramatiq.actor(broker=worker, actor_name="served_actor", queue_name="dl")(lambda: None)
    repo.fleet.register_worker(worker="w-dl", hostname="h", pid=1, queues=["dl"], threads=1,
                               executors=[], actors=sorted(worker.actors))
    depth = sql.execute("SELECT queued FROM dagq.queue_depth WHERE queue = 'dl'").fetchone()
    assert depth["queued"] == 2  # both visible

    supervisor = Supervisor(worker, LeaseBook(), heartbeat_s=5)
    with caplog.at_level(logging.WARNING, logger="dagq.supervisor"):
        assert supervisor.check_unserved() == ["ghost"]
        assert supervisor.check_unserved() == []  # once per actor name
    warnings = [r.getMessage() for r in caplog.records if "no worker serves" in r.getMessage()]
    assert len(warnings) == 1 and "'ghost'" in warnings[0] and "'dl'" in warnings[0]

    sweeper = Sweeper(repo, Settings(dead_letter_after_s=600))
    backdate(sql, ghost, 599)
    backdate(sql, served, 4000)
    assert sweeper.dead_letters() == {"dead_lettered": 0}  # not yet; served: never
    backdate(sql, ghost, 601)
    assert sweeper.run_once()["dead_lettered"] == 1
    row = node(sql, ghost)
    assert (row["status"], row["run_status"], row["attempts"]) == ("failed", "failed", 0)
    assert row["error"]["type"] == "DeadLettered" and "'ghost'" in row["error"]["message"]
    event = sql.execute("SELECT data FROM dagq.run_events WHERE run_id = %s AND type = "
                        "'node_failed'", (row["run_id"],)).fetchone()
    assert event["data"]["dead_lettered"] is True
    assert node(sql, served)["status"] == "queued"
    assert sweeper.dead_letters() == {"dead_lettered": 0}  # once

    # The worker that served it is gone: its messages too are dead-lettered.
    repo.fleet.stop_worker("w-dl")
    assert sweeper.dead_letters() == {"dead_lettered": 0}  # not for after_s yet
    sql.execute("UPDATE dagq.workers SET heartbeat_at = now() - interval '601 s' "
                "WHERE id = 'w-dl'")
    assert sweeper.dead_letters() == {"dead_lettered": 1}
    assert node(sql, served)["status"] == "failed"


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
