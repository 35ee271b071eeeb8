"""The worker's lease book: prefetch room, and leases whose outcome is being committed."""

from __future__ import annotations

import threading
import uuid

from dagq.models import LeasedNode
from dagq.workers.leases import HELD_PER_PREFETCH, LeaseBook


def node(node_id: int, queue: str = "default") -> LeasedNode:
    return LeasedNode(id=node_id, run_id=uuid.uuid4(), node_key=f"n{node_id}",
                      executor="builtin.noop", queue=queue, version=2, attempts=1,
                      max_attempts=3, timeout_s=60, params={}, run_inputs={}, deps={})


def test_finishing_leases_free_their_prefetch_slot() -> None:
    book = LeaseBook()
    for i in range(3):
        book.add(node(i), "default")
    book.add(node(9, "other"), "other")
    assert book.room("default", 4) == 1
    book.finishing(0)
    book.finishing(1)
    assert book.room("default", 4) == 3
    assert book.ids() == [0, 1, 2, 9]  # still held (and heartbeated) until committed


def test_held_leases_are_capped_even_when_all_are_finishing() -> None:
    book = LeaseBook()
    for i in range(HELD_PER_PREFETCH * 2):
        book.add(node(i), "default")
        book.finishing(i)
    assert book.room("default", 2) == 0
    book.remove(0)
    assert book.room("default", 2) == 1


def test_wait_for_room_wakes_on_a_finishing_lease_or_when_ready() -> None:
    book = LeaseBook()
    book.add(node(1), "default")
    assert book.wait_for_room("default", 1, 1, timeout=0.05) is False
    threading.Timer(0.05, book.finishing, args=(1,)).start()
    assert book.wait_for_room("default", 1, 1, timeout=5) is True
    book.add(node(2), "default")
    handed_off: list[int] = []
    threading.Timer(0.05, lambda: (handed_off.append(3), book.poke())).start()
    assert book.wait_for_room("default", 1, 1, timeout=5, ready=handed_off.__len__) is True
