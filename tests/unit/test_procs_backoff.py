"""The process group's restart back-off, on a clock the test controls: a child that keeps
dying waits 1, 2, 4 ... at most 60 s; one that ran a while starts over at 1 s."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from dagq.runtime.procs import EXIT_CANNOT_START, MAX_RESTART_DELAY_S, Child, ProcessGroup


class DeadProc:
    pid = 4242

    def __init__(self, code: int) -> None:
        self.returncode = code

    def poll(self) -> int:
        return self.returncode


@dataclass
class FakeChild(Child):
    """Starting it records the time; its process is dead at once, exiting with `code`."""

    code: int = 1
    clock = 0.0  # class attribute: the test's clock

    def start(self) -> None:
        self.proc = DeadProc(self.code)  # type: ignore[assignment]
        self.started_at = FakeChild.clock
        self.ready = False  # a new run has not said it serves (as Child.start)


def delays(group: ProcessGroup, child: FakeChild, deaths: int, ran_s: float = 0.5
           ) -> list[float]:
    """Let the child die `deaths` times, each `ran_s` after its start; the waits chosen."""
    chosen = []
    for _ in range(deaths):
        FakeChild.clock = child.started_at + ran_s
        group._restart_if_dead(child, now=FakeChild.clock)  # schedules
        chosen.append(child.restart_at - FakeChild.clock)
        group._restart_if_dead(child, now=child.restart_at - 0.01)
        assert child.restart_at is not None  # not yet
        FakeChild.clock = child.restart_at
        group._restart_if_dead(child, now=FakeChild.clock)
        assert child.restart_at is None  # restarted
    return chosen


def test_restarts_back_off_to_a_minute_and_reset_after_a_stable_run(caplog) -> None:
    group = ProcessGroup()
    child = FakeChild("worker-1", [], {}, code=EXIT_CANNOT_START)
    child.start()
    with caplog.at_level(logging.WARNING, logger="dagq.procs"):
        assert delays(group, child, 8) == [1, 2, 4, 8, 16, 32, 60, 60]
    assert child.restarts == 8 and MAX_RESTART_DELAY_S == 60
    assert "worker-1 cannot start (its error is above)" in caplog.records[0].getMessage()
    assert delays(group, child, 2, ran_s=31) == [1, 1]  # it ran long enough: start over


@pytest.mark.parametrize("code", [1, -9])
def test_a_crashing_child_is_restarted_with_the_same_back_off(code: int, caplog) -> None:
    group = ProcessGroup()
    child = FakeChild("sweeper", [], {}, code=code)
    child.start()
    with caplog.at_level(logging.WARNING, logger="dagq.procs"):
        assert delays(group, child, 3) == [1, 2, 4]
    assert f"sweeper (pid 4242) exited with {code}; restarting it in 1s (restart #1)" \
        in caplog.records[0].getMessage()


def test_a_child_that_was_serving_restarts_within_a_second_every_time(caplog) -> None:
    """Issue 27, 8: five quick SIGKILLs (an OOM burst) of a worker that had reported it
    serves: each restart 1 s later, not 1, 2, 4, 8, 16 s."""
    group = ProcessGroup()
    child = FakeChild("worker-1", [], {}, code=-9)
    child.start()
    chosen = []
    for _ in range(5):
        child.ready = True  # what its status pipe said before it was killed
        chosen.extend(delays(group, child, 1))
    assert chosen == [1, 1, 1, 1, 1]
    # One that dies before it serves (it cannot start) still backs off.
    assert delays(group, child, 4) == [2, 4, 8, 16]


def test_a_reported_cannot_start_line_is_logged_with_the_back_off(caplog) -> None:
    """A module broken by a later deploy: the line the worker reported is in the
    parent's log, and restarts back off (issue 27, 7)."""
    group = ProcessGroup()
    child = FakeChild("worker-1", [], {}, code=EXIT_CANNOT_START)
    child.start()
    child.cannot_start = "cannot import 'x' (DAGQ_ACTOR_MODULES): ImportError: no"
    with caplog.at_level(logging.WARNING, logger="dagq.procs"):
        group._restart_if_dead(child, now=1.0)
    assert child.delay_s == 1
    assert caplog.records[0].getMessage() == (
        "worker-1 cannot start: cannot import 'x' (DAGQ_ACTOR_MODULES): ImportError: no; "
        "nothing runs on it until that is fixed; trying again in 1s")
