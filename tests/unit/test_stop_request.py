"""StopRequest: what SIGTERM/SIGINT set, with a handler that takes no lock; when a stop
is hurried (issue 27, point 6: a second Ctrl-C hands running nodes back at once)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from dagq.runtime.procs import (
    HURRY_SIGNAL,
    SUPERVISOR_ENV,
    StopRequest,
    stop_on_signals,
    supervised,
    wait_for_stop,
)

SIGNALS = (signal.SIGTERM, signal.SIGINT, HURRY_SIGNAL)


@pytest.fixture(autouse=True)
def _restore_handlers() -> Iterator[None]:
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    yield
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def test_a_signal_sets_the_request_and_ends_the_wait() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        stop = stop_on_signals()
        assert not stop.is_set()
        signal.raise_signal(sig)
        assert stop.is_set() and not stop.hurried()
        wait_for_stop(stop)  # returns at once


def test_a_second_ctrl_c_hurries_a_process_on_its_own() -> None:
    stop = StopRequest(supervised=False).install()
    signal.raise_signal(signal.SIGINT)
    assert stop.is_set() and not stop.hurried()
    signal.raise_signal(signal.SIGINT)
    assert stop.hurried()


def test_a_supervised_child_hurries_only_when_its_parent_says_so() -> None:
    """One Ctrl-C reaches a child of `dagq up` twice (SIGINT from the terminal, SIGTERM
    relayed by its parent): that is one stop, not two."""
    stop = StopRequest(supervised=True).install()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGINT):
        signal.raise_signal(sig)
    assert stop.is_set() and not stop.hurried()
    signal.raise_signal(HURRY_SIGNAL)
    assert stop.hurried()


def test_the_hurry_signal_alone_stops_at_once() -> None:
    stop = StopRequest().install()
    signal.raise_signal(HURRY_SIGNAL)
    assert stop.is_set() and stop.hurried()


def test_supervised_means_a_child_of_the_process_named_in_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SUPERVISOR_ENV, raising=False)
    assert not supervised()
    monkeypatch.setenv(SUPERVISOR_ENV, str(os.getppid()))
    assert supervised()
    monkeypatch.setenv(SUPERVISOR_ENV, str(os.getpid()))  # inherited from further up
    assert not supervised()
