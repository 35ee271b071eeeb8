"""`dagq run why RUN_ID` on the database and through a live API: the same lines, the
same JSON; an unknown run exits 1 in both."""

from __future__ import annotations

import json
import uuid

import pytest

from dagq.cli import main
from dagq.config import get_settings
from dagq.service import pauses
from tests.harness.live_api import LiveApi
from tests.harness.specs import spec


def run(monkeypatch, capfd, mode: str, api: LiveApi, db_url: str, *args: str
        ) -> tuple[int, str, str]:
    """`dagq ARGS` on the database, or through the API with the admin key."""
    if mode == "api":
        monkeypatch.setenv("DAGQ_URL", api.url)
        monkeypatch.setenv("DAGQ_API_KEY", api.admin)
    else:
        monkeypatch.delenv("DAGQ_URL", raising=False)
        monkeypatch.setenv("DAGQ_DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        status = main(list(args))
    finally:
        get_settings.cache_clear()
    out, err = capfd.readouterr()
    return status, out, err.strip()


@pytest.fixture
def api(live_api: LiveApi) -> LiveApi:
    return live_api


def test_why_alike_in_both_modes(monkeypatch, capfd, api, db_url) -> None:
    run_id = api.repo.submissions.submit_run(tenant="acme", spec=spec({
        "a": {"executor": "builtin.noop"},
        "b": {"executor": "builtin.noop", "depends_on": ["a"]}}, name="chain")).run_id
    pauses.pause(api.repo, None, kind="run", name=str(run_id), reason="incident")
    answers = {mode: run(monkeypatch, capfd, mode, api, db_url, "run", "why", str(run_id))
               for mode in ("database", "api")}
    assert answers["database"] == answers["api"]
    status, out, _ = answers["database"]
    assert status == 0
    assert f"run {run_id} is queued; paused first:" in out
    assert f"a  queued  paused: run {run_id} paused by cli: incident" in out
    assert "b  pending  dependencies: waits for a" in out
    as_json = [run(monkeypatch, capfd, mode, api, db_url, "run", "why", str(run_id), "--json")
               for mode in ("database", "api")]
    assert as_json[0] == as_json[1]
    body = json.loads(as_json[0][1])
    assert body["blocked"]["reason"] == "paused"
    assert [n["key"] for n in body["nodes"]] == ["a", "b"]
    missing = [run(monkeypatch, capfd, mode, api, db_url, "run", "why", str(uuid.uuid4()))
               for mode in ("database", "api")]
    assert missing[0][0] == missing[1][0] == 1
