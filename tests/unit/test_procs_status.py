"""A reporting child tells its parent over a pipe that it serves, or why it cannot
start; a group whose child cannot start at start-up stops with that line (issue 27,
points 7 and 8). Real child processes; no database."""

from __future__ import annotations

import signal
import sys
import time

import pytest

from dagq.runtime.procs import Child, ChildCannotStart, ProcessGroup

SAY = ("import sys, time; from dagq.runtime.procs import take_status_fd, tell_parent; "
       "take_status_fd(); import os; assert 'DAGQ_STATUS_FD' not in os.environ; ")


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_child_reports_ready_over_its_pipe_and_the_next_run_starts_unready() -> None:
    child = Child("worker-1", [sys.executable, "-c", SAY + "tell_parent('ready'); "
                               "time.sleep(60)"], {}, reports=True)
    child.start()
    try:
        def ready() -> bool:
            child.read_status()
            return child.ready

        wait_until(ready)
        assert child.cannot_start is None
        child.proc.kill()
        child.proc.wait()
        child.argv = [sys.executable, "-c", "import time; time.sleep(60)"]
        child.start()  # a new run: it has not said anything yet
        child.read_status()
        assert not child.ready
    finally:
        child.proc.kill()
        child.proc.wait()


def test_a_child_without_a_parent_pipe_reports_nothing() -> None:
    from dagq.runtime.procs import tell_parent

    assert tell_parent("ready") is False  # this test process has no parent pipe


def test_a_group_stops_when_a_child_cannot_start_before_it_is_up() -> None:
    group = ProcessGroup(grace_s=10)
    group.add("sweeper", ["-c", "import time; time.sleep(60)"], {})
    group.add("worker-1", ["-c", SAY + "tell_parent('cannot-start', 'cannot import "
                           "\\'m\\' (DAGQ_ACTOR_MODULES): ImportError: gone'); "
                           "sys.exit(78)"], {}, reports=True)
    called = []
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(ChildCannotStart) as raised:
            group.run(on_up=lambda: called.append(True))
    finally:  # run() installed its own
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert raised.value.message == ("worker-1 cannot start: cannot import 'm' "
                                    "(DAGQ_ACTOR_MODULES): ImportError: gone")
    assert not called  # never "up"
    assert all(c.proc.poll() is not None for c in group.children)  # everything stopped
