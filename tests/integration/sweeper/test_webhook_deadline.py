"""One webhook attempt ends within its whole-call bound (dagq.sweeper.webhooks.TIMEOUT_S)
however slowly a receiver answers: a receiver that drips its reply a byte at a time
(each byte within the per-read timeout) must not hold a sender for longer, or a few
such receivers of one tenant stall every tenant's deliveries past their claims
(CLAIM_S), which other sweepers then send again."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from dagq.config import Settings
from dagq.sweeper import webhooks as sender

DRIP_S = 6.0  # how long the receiver goes on dripping


@pytest.fixture
def dripping() -> Iterator[str]:
    """A receiver that reads the request, then sends a reply's status line and one
    header byte every 0.2 s for DRIP_S."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nx-slow: ")
                ends = time.monotonic() + DRIP_S
                while time.monotonic() < ends and not stop.is_set():
                    try:
                        conn.sendall(b"a")
                    except OSError:
                        break  # the client hung up
                    time.sleep(0.2)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    stop.set()
    thread.join(5)
    server.close()


def test_a_dripping_receiver_is_given_up_on_at_the_attempts_bound(
        dripping: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sender, "TIMEOUT_S", 1.0)
    claim = {"id": uuid.uuid4(), "url": dripping, "secret": "s" * 20, "event": "run_failed",
             "payload": {"event": "run_failed", "created_at": datetime.now(UTC).isoformat()}}
    started = time.monotonic()
    pool = sender.pool_for(Settings(_env_file=None, http_allow="127.0.0.1"), 1)
    outcome = sender.send(claim, pool)
    pool.close()
    took = time.monotonic() - started
    assert not outcome.ok and outcome.status_code is None
    assert took < 3.0, f"the attempt took {took:.1f}s, its bound is 1s"
    assert outcome.error  # the cut connection: reset, or a reply that is not HTTP
