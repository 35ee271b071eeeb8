"""StopRequest: what SIGTERM/SIGINT set, with a handler that takes no lock."""

from __future__ import annotations

import signal

from dagq.procs import stop_on_signals, wait_for_stop


def test_a_signal_sets_the_request_and_ends_the_wait() -> None:
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            stop = stop_on_signals()
            assert not stop.is_set()
            signal.raise_signal(sig)
            assert stop.is_set()
            wait_for_stop(stop)  # returns at once
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
