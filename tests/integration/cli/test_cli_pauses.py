"""`dagq pause|resume KIND NAME` and `dagq pauses`, on the database and through a live
API (DAGQ_URL): both answer alike; bad input exits 2 and writes nothing in both; a
tenant's key may pause its own runs only."""

from __future__ import annotations

import json

import pytest

from dagq.cli import main
from dagq.config import get_settings
from tests.harness.live_api import LiveApi
from tests.harness.specs import spec


@pytest.fixture
def api(live_api: LiveApi) -> LiveApi:
    return live_api


def run(monkeypatch, capfd, mode: str, api: LiveApi, db_url: str, *args: str,
        key: str | None = None) -> tuple[int, str, str]:
    if mode == "api":
        monkeypatch.setenv("DAGQ_URL", api.url)
        monkeypatch.setenv("DAGQ_API_KEY", key or api.admin)
    else:
        monkeypatch.delenv("DAGQ_URL", raising=False)
        monkeypatch.setenv("DAGQ_DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        status = main(list(args))
    except SystemExit as exc:  # argparse
        status = int(exc.code or 0)
    finally:
        get_settings.cache_clear()
    out, err = capfd.readouterr()
    return status, out, err.strip()


def pause_count(sql) -> int:
    return sql.execute("SELECT count(*) AS n FROM dagq.pauses").fetchone()["n"]


@pytest.mark.parametrize("mode", ["database", "api"])
def test_pause_list_resume(monkeypatch, capfd, api, db_url, sql, mode) -> None:
    def cli(*args: str) -> tuple[int, str, str]:
        return run(monkeypatch, capfd, mode, api, db_url, *args)

    status, out, _ = cli("pause", "queue", "default", "--reason", "bad deploy",
                         "--refuse-submits", "--json")
    made = json.loads(out)
    assert status == 0 and made["reason"] == "bad deploy" and made["refuse_submits"]
    assert made["created_by"] == ("cli" if mode == "database" else made["created_by"])
    status, out, _ = cli("pause", "queue", "default")
    assert status == 0 and made["id"] in out  # the same pause
    status, out, _ = cli("pauses", "--json")
    assert [p["id"] for p in json.loads(out)["pauses"]] == [made["id"]]
    status, out, _ = cli("pauses")
    assert status == 0 and "1 pause(s)" in out and "queue" in out
    status, out, _ = cli("resume", "queue", "default")
    assert status == 0 and out.strip() == f"resumed queue default (pause {made['id']})"
    status, _, err = cli("resume", "queue", "default")
    assert status == 1 and err == "dagq: error: no active pause queue default"
    status, out, _ = cli("pauses", "--history", "--json")
    assert json.loads(out)["pauses"][0]["resumed_at"] is not None


@pytest.mark.parametrize(("args", "message"), [
    (["pause", "queue", "bad name!"], "is not a valid queue name"),
    (["pause", "run", "nope"], "a run is named by its id"),
    (["pause", "queue", "q", "--reason", "r" * 1001], "reason must be at most 1000"),
    (["resume", "workflow", "a b"], "is not a valid workflow name"),
])
def test_bad_input_exits_2_alike_and_writes_nothing(monkeypatch, capfd, api, db_url, sql,
                                                    args, message) -> None:
    answers = [run(monkeypatch, capfd, mode, api, db_url, *args)
               for mode in ("database", "api")]
    assert answers[0] == answers[1]
    status, _, err = answers[0]
    assert status == 2 and message in err
    assert pause_count(sql) == 0


def test_a_tenant_key_pauses_its_own_runs_only(monkeypatch, capfd, api, db_url, sql) -> None:
    run_id = api.repo.submissions.submit_run(
        tenant="acme", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
    status, _, err = run(monkeypatch, capfd, "api", api, db_url, "pause", "queue", "q",
                         key=api.acme)
    assert status == 1 and "needs an admin key" in err
    status, out, _ = run(monkeypatch, capfd, "api", api, db_url, "pause", "run", str(run_id),
                         key=api.acme)
    assert status == 0 and f"paused run {run_id}" in out
    status, _, err = run(monkeypatch, capfd, "api", api, db_url, "pause", "run", str(run_id),
                         key=api.globex)
    assert status == 1 and "not found" in err
    assert pause_count(sql) == 1
