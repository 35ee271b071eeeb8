"""`dagq submit --meta`, `dagq runs --meta/--since` and `dagq runs cancel|retry|rerun` in
both modes (issue 34, item 2): through the API a key acts on its own tenant's runs only,
on the database on every tenant's; a second call skips what the first did; on a terminal
the action asks first."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dagq.cli import main
from dagq.config import get_settings
from tests.harness.live_api import LiveApi

FLOW = {"name": "flow", "nodes": {"a": {"executor": "builtin.noop"}}}


@pytest.fixture
def modes(live_api: LiveApi, db_url: str, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, dict[str, str]]]:
    """The environment of each mode: through the API (tenant acme's key), the database."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flow.json").write_text(json.dumps(FLOW))
    for name in ("DAGQ_URL", "DAGQ_API_KEY", "DAGQ_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    yield {"api": {"DAGQ_URL": live_api.url, "DAGQ_API_KEY": live_api.acme},
           "db": {"DAGQ_DATABASE_URL": db_url}}
    get_settings.cache_clear()


def dagq(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
         capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with monkeypatch.context() as patched:
        for name, value in env.items():
            patched.setenv(name, value)
        get_settings.cache_clear()
        status = main(list(args))
    out, err = capfd.readouterr()
    return status, out, err


def statuses(sql: psycopg.Connection) -> dict[tuple[str, str], int]:
    rows = sql.execute("SELECT tenant, status, count(*) AS n FROM dagq.runs "
                       "GROUP BY tenant, status").fetchall()
    return {(row["tenant"], row["status"]): row["n"] for row in rows}


def test_tag_find_and_act_in_both_modes(modes: dict[str, dict[str, str]], live_api: LiveApi,
                                        sql: psycopg.Connection,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capfd: pytest.CaptureFixture[str]) -> None:
    api, db = modes["api"], modes["db"]
    for env, tenant in ((api, []), (api, []), (db, ["--tenant", "acme"])):
        assert dagq(env, monkeypatch, capfd, "submit", "flow.json", "--meta", "batch=b1",
                    "--meta", "user=7", *tenant)[0] == 0
    assert dagq(db, monkeypatch, capfd, "submit", "flow.json", "--tenant", "globex",
                "--meta", "batch=b1")[0] == 0
    assert dagq(api, monkeypatch, capfd, "submit", "flow.json", "--meta", "batch=b2")[0] == 0

    status, out, _ = dagq(api, monkeypatch, capfd, "runs", "--meta", "batch=b1", "--meta",
                          "user=7", "--since", "1h", "--json")
    listed = json.loads(out)["runs"]
    assert status == 0 and len(listed) == 3  # acme's, not globex's
    assert all(run["metadata"] == {"batch": "b1", "user": "7"} for run in listed)
    assert dagq(db, monkeypatch, capfd, "runs", "--meta", "batch=b1", "--until", "1h",
                "--json")[1] == '{\n  "runs": []\n}\n'
    for env in (api, db):
        shown = dagq(env, monkeypatch, capfd, "run", "show", listed[0]["run_id"])[1]
        assert "metadata batch=b1  user=7" in shown, shown

    # through the API: acme's runs only; again: nothing more to do
    assert dagq(api, monkeypatch, capfd, "runs", "cancel", "--meta", "batch=b1", "--yes")[1] \
        == "cancelled 3 run(s); skipped 0\n"
    assert statuses(sql) == {("acme", "cancelled"): 3, ("acme", "queued"): 1,
                             ("globex", "queued"): 1}
    assert dagq(api, monkeypatch, capfd, "runs", "cancel", "--meta", "batch=b1", "--yes")[1] \
        == "cancelled 0 run(s); skipped 3 (already_cancelled 3)\n"
    # on the database: every tenant's
    assert dagq(db, monkeypatch, capfd, "runs", "cancel", "--meta", "batch=b1", "--yes")[1] \
        == "cancelled 1 run(s); skipped 3 (already_cancelled 3)\n"
    status, out, _ = dagq(db, monkeypatch, capfd, "runs", "retry", "--status", "cancelled",
                          "--limit", "2", "--yes", "--json")
    assert status == 0 and json.loads(out) == {"acted": 2, "skipped": 0, "skipped_by": {}}
    status, out, _ = dagq(api, monkeypatch, capfd, "runs", "rerun", "--meta", "batch=b1",
                          "--from", "a", "--yes", "--json")
    # (of acme's three: the newest was retried above, so it is open)
    assert json.loads(out) == {"acted": 2, "skipped": 1, "skipped_by": {"open": 1}}
    assert sql.execute("SELECT count(*) AS n FROM dagq.runs WHERE rerun_of IS NOT NULL "
                       "AND metadata = '{\"batch\": \"b1\", \"user\": \"7\"}'"
                       ).fetchone()["n"] == 2


def test_the_action_asks_on_a_terminal(modes: dict[str, dict[str, str]],
                                       sql: psycopg.Connection,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capfd: pytest.CaptureFixture[str]) -> None:
    db = modes["db"]
    assert dagq(db, monkeypatch, capfd, "submit", "flow.json", "--meta", "k=v")[0] == 0

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    status, out, err = dagq(db, monkeypatch, capfd, "runs", "cancel", "--meta", "k=v")
    assert status == 2 and "cancel every run matching meta.k=v? [y/N]" in out
    assert err == "dagq: error: not confirmed: nothing was done\n"
    assert statuses(sql) == {("default", "queued"): 1}
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    status, out, _ = dagq(db, monkeypatch, capfd, "runs", "cancel", "--meta", "k=v")
    assert status == 0 and out.endswith("cancelled 1 run(s); skipped 0\n")
    assert statuses(sql) == {("default", "cancelled"): 1}
