"""The worker's lease book: prefetch room, leases whose outcome is being committed, and
two attempts of one node (issue 12, fault 2)."""

from __future__ import annotations

import threading
import time
import uuid

from dagq.models import LeasedNode
from dagq.workers.errors import NodeCancelled
from dagq.workers.leases import HELD_PER_PREFETCH, LeaseBook, of_nodes


def node(node_id: int, queue: str = "default", version: int = 2) -> LeasedNode:
    return LeasedNode(id=node_id, run_id=uuid.uuid4(), node_key=f"n{node_id}",
                      executor="builtin.noop", queue=queue, version=version, attempts=1,
                      max_attempts=3, timeout_s=60, params={}, run_inputs={}, deps={})


def finish(book: LeaseBook, key: tuple[int, int]) -> None:
    """The executor ran (begin, end) and its outcome went to the committer: the only way
    a lease reaches finishing (see the state machine in workers/leases.py)."""
    book.begin(key, timeout_s=60)
    book.end(key)
    book.finishing(key)


def test_finishing_leases_free_their_prefetch_slot() -> None:
    book = LeaseBook()
    for i in range(3):
        book.add(node(i), "default")
    book.add(node(9, "other"), "other")
    assert book.room("default", 4) == 1
    finish(book, (0, 2))
    finish(book, (1, 2))
    assert book.room("default", 4) == 3
    assert book.ids() == [0, 1, 2, 9]  # still held (and heartbeated) until committed


def test_held_leases_are_capped_even_when_all_are_finishing() -> None:
    book = LeaseBook()
    for i in range(HELD_PER_PREFETCH * 2):
        book.add(node(i), "default")
        finish(book, (i, 2))
    assert book.room("default", 2) == 0
    book.remove((0, 2))
    assert book.room("default", 2) == 1


def test_wait_for_room_wakes_on_a_finishing_lease_or_when_ready() -> None:
    book = LeaseBook()
    book.add(node(1), "default")
    assert book.wait_for_room("default", 1, 1, timeout=0.05) is False
    threading.Timer(0.05, finish, args=(book, (1, 2))).start()
    assert book.wait_for_room("default", 1, 1, timeout=5) is True
    book.add(node(2), "default")
    handed_off: list[int] = []
    threading.Timer(0.05, lambda: (handed_off.append(3), book.poke())).start()
    assert book.wait_for_room("default", 1, 1, timeout=5, ready=handed_off.__len__) is True


def test_a_late_removal_of_an_old_attempt_leaves_the_new_one() -> None:
    """The node was taken back and leased again by this worker: the old attempt's late
    ack/nack removes only its own lease; the new one stays held and heartbeated."""
    book = LeaseBook()
    old = book.add(node(7, version=2), "default")
    new = book.add(node(7, version=4), "default")
    assert old.lost and old.interrupt is NodeCancelled  # superseded: stopped, discarded
    assert not new.lost and new.interrupt is None
    book.remove((7, 2))  # the old attempt's late outcome
    assert book.get((7, 4)) is new
    assert book.get((7, 2)) is None
    assert book.ids() == [7]
    assert book.room("default", 4) == 3


def test_heartbeat_ids_include_the_new_attempt_while_the_old_one_runs() -> None:
    book = LeaseBook()
    book.add(node(1), "default")
    old = book.add(node(7, version=2), "default")
    started, raised = threading.Event(), []

    def old_attempt() -> None:  # an executor still running the old attempt
        book.begin((7, 2), timeout_s=60)
        started.set()
        try:
            for _ in range(500):
                time.sleep(0.01)
        except NodeCancelled as exc:
            raised.append(exc)
        book.end((7, 2))

    thread = threading.Thread(target=old_attempt)
    thread.start()
    assert started.wait(5)
    book.add(node(7, version=4), "default")
    assert book.ids() == [1, 7]  # each node once: the heartbeat is by node id
    thread.join(5)
    assert raised and old.lost  # the superseded attempt was stopped
    assert book.begin((7, 4), timeout_s=60) is None  # the new attempt runs unhindered
    book.remove((7, 2))
    assert book.ids() == [1, 7]
    assert book.get((7, 4)) is not None and not book.get((7, 4)).lost
    assert book.end((7, 4)) is None


def test_a_lost_node_loses_every_attempt_and_stop_reaches_each() -> None:
    """Every attempt held when the heartbeat asked: an answer by node id reaches each."""
    book = LeaseBook()
    book.add(node(7, version=2), "default")
    book.add(node(7, version=4), "default")
    book.add(node(8), "default")
    finish(book, (8, 2))
    held = book.keys()
    assert held == [(7, 2), (7, 4), (8, 2)]
    lost = book.mark_lost_keys(of_nodes(held, {7, 8}))
    assert lost == {(7, 2), (7, 4)}  # 8 is being committed
    assert all(book.get(key).lost for key in held)
    assert sorted(of_nodes(held, [7])) == [(7, 2), (7, 4)]


def test_only_the_attempts_held_when_the_heartbeat_asked_are_lost() -> None:
    book = LeaseBook()
    book.add(node(7, version=2), "default")
    held = book.keys()  # the heartbeat asks about node 7 (attempt 2)...
    new = book.add(node(7, version=4), "default")  # ...which is leased again meanwhile
    assert book.mark_lost_keys(of_nodes(held, {7})) == {(7, 2)}
    assert not new.lost and new.interrupt is None
    book.remove((7, 2))
    assert book.mark_lost_keys(held) == set()  # no longer held: nothing to lose


def test_an_older_attempt_added_after_a_newer_one_is_lost_at_once() -> None:
    book = LeaseBook()
    new = book.add(node(7, version=4), "default")
    old = book.add(node(7, version=2), "default")
    assert old.lost and not new.lost
    book.remove((7, 4))
    assert book.get((7, 2)) is old and book.ids() == [7]


def test_a_stopping_worker_hands_back_all_but_the_finishing_leases() -> None:
    from dagq.workers.errors import WorkerShutdown

    book = LeaseBook()
    held, started, done = (book.add(node(i), "default") for i in range(3))
    finish(book, done.key)
    running, raised = threading.Event(), []

    def executor() -> None:  # the attempt still running when the grace ends
        book.begin(started.key, timeout_s=60)
        running.set()
        try:
            for _ in range(500):
                time.sleep(0.01)
        except WorkerShutdown as exc:
            raised.append(exc)
        book.end(started.key)

    thread = threading.Thread(target=executor)
    thread.start()
    assert running.wait(5)
    assert [lease.key for lease in book.executing_leases()] == [started.key]
    assert started.began_at is not None
    keys = book.hand_back(WorkerShutdown)
    thread.join(5)
    assert raised and not thread.is_alive()  # interrupted at once
    assert sorted(keys) == sorted([held.key, started.key])
    assert held.lost and held.interrupt is WorkerShutdown  # fails as soon as it starts
    assert started.lost
    assert not done.lost and done.finishing  # its outcome is the committer's
    # The heartbeat then finds them gone: already stopped, nothing more to do.
    assert book.mark_lost_keys(book.keys()) == set()
    book.remove(started.key)
    again = book.add(node(1, version=5), "default")  # (a later lease of the same node)
    assert book.mark_lost_keys([again.key]) == {again.key}


def test_holds_runs_answers_for_the_runs_of_held_leases() -> None:
    book = LeaseBook()
    assert not book.holds_runs(None)
    lease = book.add(node(1), "default")
    assert book.holds_runs(None)
    assert book.holds_runs(frozenset({lease.node.run_id, uuid.uuid4()}))
    assert not book.holds_runs(frozenset({uuid.uuid4()}))


def test_a_cancel_notification_names_runs_or_any() -> None:
    from dagq.workers.listener import cancelled_runs

    a, b = uuid.uuid4(), uuid.uuid4()
    assert cancelled_runs(f"{a},{b}") == frozenset({a, b})
    assert cancelled_runs("*") is None
    assert cancelled_runs("not-a-uuid") is None  # a check too many, never one too few
