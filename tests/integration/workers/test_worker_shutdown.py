"""A stopping worker gives up on a database that does not answer within its budget,
instead of retrying for a minute and being killed by `dagq up` (45 s grace)."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
from dramatiq import Worker
from psycopg_pool import ConnectionPool

from dagq.errors import DatabaseUnavailable
from dagq.store import Store
from dagq.workers import process
from dagq.workers.broker import PostgresBroker
from dagq.workers.listener import QueueListener
from dagq.workers.supervisor import Supervisor


def unreachable_url() -> str:
    with socket.socket() as sock:  # a port nothing listens on once this is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://dagq@127.0.0.1:{port}/dagq?connect_timeout=1"


@pytest.fixture
def unreachable_repo():
    url = unreachable_url()
    # As a worker's pool, but never connected: the pool's own timeout (30 s) applies.
    pool = ConnectionPool(url, min_size=1, max_size=2, name="unreachable", open=False)
    pool.open(wait=False)
    repo = Store(pool)  # the default retry of transient errors: 60 s
    yield url, repo
    pool.close(timeout=1)


def test_a_bounded_call_gives_up_within_its_bound(unreachable_repo) -> None:
    _, repo = unreachable_repo
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        repo.bounded(2.0).fleet.stop_worker("w1")
    assert time.monotonic() - started < 10  # bound about 2 s; unbounded: 60 s and more
    assert repo.db.retry_s == 60 and repo.db.wait_s is None  # the repository itself unchanged


def test_shutdown_marking_the_worker_stopped_gives_up_in_time(unreachable_repo,
                                                              caplog) -> None:
    url, repo = unreachable_repo
    broker = PostgresBroker(repo, worker_id="w1", lease_ttl_s=30, max_output_bytes=1000)
    worker = Worker(broker, queues=set(), worker_threads=1)
    supervisor = Supervisor(broker, broker.book, heartbeat_s=5)
    listener = QueueListener(url)
    shutdown = threading.Thread(target=process._shut_down, daemon=True,
                                args=(worker, broker, broker.book, supervisor, listener))
    with caplog.at_level(logging.WARNING, logger="dagq.worker"):
        shutdown.start()
        # Nothing runs, so only the cleanup's budget applies; the machine is loaded.
        shutdown.join(process.CLEANUP_S + 10)
        assert not shutdown.is_alive(), "the shutdown still waits on the database"
    assert "could not mark worker w1 stopped" in caplog.text
