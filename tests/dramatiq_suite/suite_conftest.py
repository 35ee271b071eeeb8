"""The conftest Dramatiq's own tests run with against PostgresBroker (copied as
conftest.py beside the tests unpacked from Dramatiq's sdist; see test_dramatiq_suite.py).

Fixtures in the shape of Dramatiq's own: `stub_broker` is a PostgresBroker on a fresh
database (made from the migrated template of the outer test run), `stub_worker` a
dramatiq.Worker on it, `result_backend` a PostgresResultBackend on the same database,
`rate_limiter_backend` a PostgresRateLimiterBackend (and Dramatiq's StubBackend).
Written for dagq; none of Dramatiq's test code is copied here.
"""

from __future__ import annotations

import itertools
import logging
import os
from urllib.parse import urlsplit, urlunsplit

import dramatiq
import psycopg
import pytest
from dramatiq import Worker
from dramatiq.rate_limits import backends as rl_backends
from psycopg import sql

from dagq import PostgresBroker, PostgresRateLimiterBackend, PostgresResultBackend

logging.basicConfig(level=logging.INFO,
                    format="[%(asctime)s] [%(threadName)s] [%(name)s] [%(levelname)s] %(message)s")

ADMIN_URL = os.environ["DAGQ_SUITE_ADMIN_URL"]
TEMPLATE = os.environ["DAGQ_SUITE_TEMPLATE"]
_names = itertools.count()


def _admin(statement: sql.Composable) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(statement)


class SuiteDatabase(str):
    """A fresh database's URL; what uses it is closed when it is dropped (after the
    worker stopped: a result backend closed first would fail the last results)."""

    def __new__(cls, url):
        made = super().__new__(cls, url)
        made.closers = []
        return made


@pytest.fixture()
def suite_database():
    name = f"dagq_suite_{os.getpid()}_{next(_names)}"
    _admin(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                           sql.Identifier(TEMPLATE)))
    database = SuiteDatabase(urlunsplit(urlsplit(ADMIN_URL)._replace(path="/" + name)))
    yield database
    for close in database.closers:
        close()
    _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture()
def stub_broker(suite_database):
    broker = PostgresBroker(url=suite_database)
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    yield broker
    broker.flush_all()
    broker.close()


@pytest.fixture()
def stub_worker(stub_broker):
    worker = Worker(stub_broker, worker_timeout=100, worker_threads=32)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture(params=["postgres"])
def result_backend(request, suite_database):
    backend = PostgresResultBackend(url=suite_database)
    suite_database.closers.append(backend.store.close)
    return backend


@pytest.fixture
def redis_result_backend(suite_database):
    """Asked for by name by one backend-agnostic test (it only builds a Results)."""
    backend = PostgresResultBackend(url=suite_database)
    suite_database.closers.append(backend.store.close)
    return backend


@pytest.fixture(params=["postgres", "stub"])
def rate_limiter_backend(request, suite_database):
    if request.param == "stub":
        return rl_backends.StubBackend()
    backend = PostgresRateLimiterBackend(url=suite_database)
    suite_database.closers.append(backend.store.close)
    return backend


@pytest.fixture
def info_logging():
    logger = logging.getLogger()
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(logging.DEBUG)
