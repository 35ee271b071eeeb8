"""The lease state machine (workers/leases.py): every allowed move, and every refused
one leaves the state as it was."""

from __future__ import annotations

import itertools
import logging
import uuid

import pytest

from dagq.models import LeasedNode
from dagq.workers.leases import MOVES, Lease, LeaseBook, LeaseState

S = LeaseState
EVENTS = ("begin", "end", "lose", "finish")
ALLOWED = {
    (S.HELD, "begin"): S.EXECUTING, (S.HELD, "end"): S.HELD, (S.HELD, "lose"): S.LOST,
    (S.EXECUTING, "end"): S.RAN, (S.EXECUTING, "lose"): S.LOST_EXECUTING,
    (S.RAN, "finish"): S.FINISHING, (S.RAN, "lose"): S.LOST,
    (S.FINISHING, "lose"): S.LOST_FINISHING, (S.LOST_FINISHING, "lose"): S.LOST_FINISHING,
    (S.LOST, "begin"): S.LOST_EXECUTING, (S.LOST, "end"): S.LOST, (S.LOST, "lose"): S.LOST,
    (S.LOST_EXECUTING, "end"): S.LOST, (S.LOST_EXECUTING, "lose"): S.LOST_EXECUTING,
}


def node(version: int = 1) -> LeasedNode:
    return LeasedNode(id=7, run_id=uuid.uuid4(), node_key="n", executor="builtin.noop",
                      queue="default", version=version, attempts=1, max_attempts=3,
                      timeout_s=30, params={}, run_inputs={}, deps={})


def test_the_table_is_exactly_the_documented_moves() -> None:
    assert MOVES == ALLOWED


@pytest.mark.parametrize(("state", "event"), sorted(ALLOWED, key=str))
def test_every_allowed_move(state: LeaseState, event: str) -> None:
    lease = Lease(node(), "default", state=state)
    assert lease.move(event) is True
    assert lease.state is ALLOWED[state, event]


REFUSED = [(s, e) for s, e in itertools.product(LeaseState, EVENTS) if (s, e) not in ALLOWED]


@pytest.mark.parametrize(("state", "event"), REFUSED, ids=[f"{s.value}-{e}" for s, e in REFUSED])
def test_every_refused_move_changes_nothing(state: LeaseState, event: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    lease = Lease(node(), "default", state=state)
    with caplog.at_level(logging.WARNING, logger="dagq.worker"):
        assert lease.move(event) is False
    assert lease.state is state
    assert "refused" in caplog.text


def test_derived_flags_follow_the_state() -> None:
    executing = {s for s in LeaseState if Lease(node(), "q", state=s).executing}
    lost = {s for s in LeaseState if Lease(node(), "q", state=s).lost}
    assert executing == {S.EXECUTING, S.LOST_EXECUTING}
    assert lost == {S.LOST, S.LOST_EXECUTING, S.LOST_FINISHING}
    finishing = {s for s in LeaseState if Lease(node(), "q", state=s).finishing}
    assert finishing == {S.FINISHING, S.LOST_FINISHING}


def test_a_lease_through_the_book_from_held_to_finishing() -> None:
    book = LeaseBook()
    lease = book.add(node(), "default")
    assert lease.state is S.HELD
    assert book.begin(lease.key, timeout_s=30) is None and lease.state is S.EXECUTING
    assert book.end(lease.key) is None and lease.state is S.RAN
    book.finishing(lease.key)
    assert lease.state is S.FINISHING
    assert book.mark_lost_keys([lease.key]) == set()  # handed over: nothing to stop
    assert lease.state is S.LOST_FINISHING and lease.finishing and lease.lost


def test_a_newer_attempt_supersedes_a_held_one() -> None:
    """(An executing one would get an asynchronous NodeCancelled in its thread: the
    interrupt path is covered by the worker tests on real processes.)"""
    book = LeaseBook()
    old = book.add(node(version=1), "default")
    new = book.add(node(version=2), "default")
    assert old.state is S.LOST and old.lost and old.interrupt is not None
    assert new.state is S.HELD and not new.lost
