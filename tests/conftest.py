from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from dagq.runtime.db import open_pool
from dagq.store import Store
from tests.harness.pg import TestServer
from tests.harness.procs import WorkerFleet

# The suite uses builtin.fail and builtin.crash (off by default): every process it starts
# inherits this, and in-process submits read it (a test of the default sets it off).
os.environ["DAGQ_TEST_EXECUTORS"] = "on"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TestServer]:
    server = TestServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def db_url(pg_server: TestServer) -> Iterator[str]:
    url = pg_server.new_database()
    yield url
    pg_server.drop_database(url)


@pytest.fixture
def repo(db_url: str) -> Iterator[Store]:
    repository = Store(open_pool(db_url, size=12, name="test"))
    yield repository
    repository.close()


@pytest.fixture
def sql(db_url: str) -> Iterator[psycopg.Connection]:
    """A plain autocommit connection for arranging and asserting rows directly."""
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def fleet(db_url: str, tmp_path: Path) -> Iterator[WorkerFleet]:
    """Worker, sweeper and API subprocesses on the per-test database (tests/e2e,
    tests/chaos), all stopped at teardown."""
    fleet = WorkerFleet(db_url, tmp_path)
    yield fleet
    fleet.stop_all()
