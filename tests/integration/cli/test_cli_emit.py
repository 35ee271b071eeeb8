"""`dagq emit` in both modes (the database, and DAGQ_URL through the API): the runs an
event started, a repeated --event-id starting nothing new, and bad input answered alike
(the same line, exit 2) without writing anything."""

from __future__ import annotations

import json

import psycopg
import pytest

from dagq import service
from dagq.cli import main
from dagq.config import get_settings
from tests.harness.live_api import LiveApi

ON_ORDER = {"name": "ship", "triggers": [
    {"event": "order.paid", "if": {"path": "payload.country", "in": ["FR", "DE"]}}],
    "nodes": {"pack": {"executor": "builtin.echo"}}}
BAD: list[tuple[list[str], str]] = [
    (["emit", "bad name"], "an event's name has 1 to 128 characters"),
    (["emit", "order.paid", "--payload", "[1]"], "an event's payload is a JSON object"),
    (["emit", "order.paid", "--payload", "{x"], "--payload is not valid JSON"),
    (["emit", "order.paid", "--event-id", ""], "event_id has 1 to 256 characters"),
    (["emit", "order.paid", "--meta", "k"], "--meta 'k' must be KEY=VALUE"),
]


def counts(sql: psycopg.Connection) -> tuple[int, int]:
    row = sql.execute("SELECT (SELECT count(*) FROM dagq.runs) AS r, "
                      "(SELECT count(*) FROM dagq.events) AS e").fetchone()
    return row["r"], row["e"]


def emit_json(args: list[str], capfd: pytest.CaptureFixture[str]) -> dict:
    assert main([*args, "--json"]) == 0
    return json.loads(capfd.readouterr().out)


@pytest.mark.parametrize("mode", ["database", "api"])
def test_emit_in_both_modes(mode: str, live_api: LiveApi, db_url: str, sql,
                            monkeypatch: pytest.MonkeyPatch,
                            capfd: pytest.CaptureFixture[str], tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    service.register_workflow(live_api.repo, ON_ORDER)
    tenant: list[str] = []
    if mode == "api":
        monkeypatch.setenv("DAGQ_URL", live_api.url)
        monkeypatch.setenv("DAGQ_API_KEY", live_api.acme)
    else:
        monkeypatch.setenv("DAGQ_DATABASE_URL", db_url)
        tenant = ["--tenant", "acme"]
    get_settings.cache_clear()
    try:
        for args, says in BAD:
            assert main([*args, *tenant]) == 2
            assert says in capfd.readouterr().err
        assert counts(sql) == (0, 0)
        first = emit_json(["emit", "order.paid", "--payload", '{"country": "FR"}',
                           "--event-id", "o-1", "--meta", "order=o-1", *tenant], capfd)
        assert first["created"] and first["tenant"] == "acme"
        assert [r["workflow"] for r in first["runs"]] == ["ship"]
        again = emit_json(["emit", "order.paid", "--payload", '{"country": "FR"}',
                           "--event-id", "o-1", *tenant], capfd)
        assert not again["created"] and again["runs"] == first["runs"]
        assert main(["emit", "order.paid", "--payload", '{"country": "US"}', *tenant]) == 0
        assert "0 run(s) started" in capfd.readouterr().out
        assert counts(sql) == (1, 2)
        run = service.get_run(live_api.repo, first["runs"][0]["run_id"], tenant="acme")
        assert run.metadata == {"order": "o-1"}
    finally:
        get_settings.cache_clear()
