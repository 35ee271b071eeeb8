"""A run's events as the API reads them (events_after, run_feed) include every event of
the run, also one written by a transaction that began before the run was submitted: its
created_at (now(), the transaction's start) is then earlier than the run's. The reads
bound created_at below (migration 025: to skip the day partitions before the run's),
and that bound must not drop such an event.

The real case: a run waiting for its concurrency key's slot is started by the
transaction that ends the run holding the slot. That transaction may have begun (and
waited for a node row's lock) before the waiting run was submitted; the events it
writes for the waiting run then carry its own, earlier, start time."""

from __future__ import annotations

import threading
import time

import psycopg

from dagq import service
from dagq.store import Store
from dagq.store.streams import FeedCursor
from tests.harness.drive import complete

CHAT = {"name": "chat", "defaults": {"max_attempts": 1},
        "concurrency": {"key": "inputs.conversation_id", "limit": 1},
        "nodes": {"reply": {"executor": "builtin.noop"}}}


def _submit(repo: Store) -> service.SubmitResult:
    return service.submit(repo, tenant="acme", workflow=CHAT,
                          inputs={"conversation_id": "c1"})


def _wait_for_a_lock_wait(sql) -> None:
    deadline = time.monotonic() + 10
    while not sql.execute("SELECT count(*) AS n FROM pg_locks WHERE NOT granted"
                          ).fetchone()["n"]:
        assert time.monotonic() < deadline, "the completion never waited for the row"
        time.sleep(0.02)


def _types(repo: Store, run_id, since=None) -> tuple[list[str], list[str]]:
    listed = [e.type for e in repo.runs.events(run_id)]
    feed = repo.streams.run_feed(run_id, FeedCursor(), limit=100, since=since)
    return listed, [i.row["type"] for i in feed.items if i.kind == "event"]


def test_events_written_by_a_transaction_older_than_the_run_are_read(
        repo: Store, sql, db_url: str) -> None:
    holding = _submit(repo)
    [node] = repo.leases.lease(worker="w", queue="default", limit=10, ttl_s=30)
    done: list[bool] = []
    with psycopg.connect(db_url) as holder:  # a transaction: the node's row stays locked
        holder.execute("SELECT id FROM dagq.node_tasks WHERE id = %s FOR UPDATE", (node.id,))
        ending = threading.Thread(
            target=lambda: done.append(complete(repo, node.id, node.version, {})))
        ending.start()
        _wait_for_a_lock_wait(sql)  # its transaction has begun: its now() is fixed
        waiting = _submit(repo)
        assert waiting.status == "queued"
        holder.rollback()
    ending.join(30)
    assert done == [True]
    assert repo.runs.get_run(holding.run_id).status == "succeeded"
    older = sql.execute(
        "SELECT e.type FROM dagq.run_events e JOIN dagq.runs r ON r.id = e.run_id "
        "WHERE e.run_id = %s AND e.created_at < r.created_at ORDER BY e.id",
        (waiting.run_id,)).fetchall()
    assert older, "the case at hand: events older than their run"
    stored = [r["type"] for r in sql.execute(
        "SELECT type FROM dagq.run_events WHERE run_id = %s ORDER BY id",
        (waiting.run_id,)).fetchall()]
    created = repo.runs.get_run(waiting.run_id, None, with_nodes=False).created_at
    listed, fed = _types(repo, waiting.run_id)
    assert listed == stored and fed == stored
    assert _types(repo, waiting.run_id, since=created) == (stored, stored)
