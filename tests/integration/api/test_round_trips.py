"""Round trips the API spends on hot or probing paths: /readyz checks the schema and
counts workers in one pool checkout, and the unserved-nodes check that every GET of an
open run makes is a single statement (no BEGIN/COMMIT). Measured with libpq's own
protocol trace of the connections the repository checks out."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import pq

from tests.harness.api import Api


class Traced:
    """Every connection checked out of `repo.db.pool` while installed, with the frontend
    messages it sent (libpq trace lines starting with "F")."""

    def __init__(self, pool: Any, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.checkouts = 0
        self.path = path
        real = pool.connection

        @contextlib.contextmanager
        def connection(*args: Any, **kwargs: Any) -> Iterator[Any]:
            with real(*args, **kwargs) as conn, path.open("a") as out:
                self.checkouts += 1
                conn.pgconn.trace(out.fileno())
                conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
                try:
                    yield conn
                finally:
                    conn.pgconn.untrace()

        monkeypatch.setattr(pool, "connection", connection)

    def sent(self) -> list[str]:
        """The frontend messages, one string each (a statement's SQL may span lines)."""
        messages: list[str] = []
        for line in self.path.read_text().splitlines():
            if line.startswith(("F\t", "B\t")):
                messages.append(line)
            elif messages:
                messages[-1] += "\n" + line
        return [m for m in messages if m.startswith("F\t")]


def test_readyz_uses_one_checkout(api: Api, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    traced = Traced(api.repo.db.pool, tmp_path / "trace", monkeypatch)
    response = api.client.get("/readyz")
    assert response.status_code == 200 and response.json()["workers"] == 0
    assert traced.checkouts == 1
    sent = traced.sent()
    assert any("FROM dagq.schema_migrations" in m for m in sent)
    assert any("FROM dagq.workers" in m for m in sent)


def test_unserved_nodes_is_one_statement(api: Api, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = api.submit(api.acme)["run_id"]
    traced = Traced(api.repo.db.pool, tmp_path / "trace", monkeypatch)
    assert len(api.repo.fleet.unserved_nodes(run_id)) == 2  # echo, merge: no worker serves them
    sent = traced.sent()
    assert traced.checkouts == 1
    assert [m for m in sent if "\tParse\t" in m and "FROM dagq.node_tasks" in m]
    assert not [m for m in sent if "BEGIN" in m or "COMMIT" in m], sent
