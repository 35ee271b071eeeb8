"""The commands issue 34 added, with good input, in both modes where they act: run
cancel and retry, `run show`'s error summary (the user's frames first, --verbose for
all), `keys list|revoke` through a live API (the revoked key then gets a 401) and on the
database (revoked_by "cli")."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import dramatiq
import httpx
import pytest

import dagq
from dagq.cli import main
from dagq.cli.summary import error_lines, one_line, shorten
from dagq.config import get_settings
from tests.harness.live_api import LiveApi
from tests.harness.specs import spec

FLOW = {"a": {"executor": "builtin.noop", "max_attempts": 1},
        "b": {"executor": "builtin.noop", "depends_on": ["a"]}}
DAGQ_FILE = os.path.join(os.path.dirname(dagq.__file__), "workers", "executors.py")
DRAMATIQ_FILE = os.path.join(os.path.dirname(dramatiq.__file__), "worker.py")
TRACEBACK = f'''Traceback (most recent call last):
  File "{DRAMATIQ_FILE}", line 500, in process_message
    res = actor(*message.args, **message.kwargs)
  File "{DAGQ_FILE}", line 120, in run_node
    return fn(ctx)
  File "/home/dev/project/tasks/summarize.py", line 42, in summarize
    raise ValueError(f"document {{doc_id}} has no text to summarize")
ValueError: document 7 has no text to summarize
'''
ERROR = {"type": "ValueError", "traceback": TRACEBACK,
         "message": "document 7 has no text to summarize " + "and more words " * 40}


@pytest.fixture
def modes(live_api: LiveApi, db_url: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, dict[str, str]]]:
    """Environments: "remote" (DAGQ_URL, the admin key), "local" (DAGQ_DATABASE_URL)."""
    yield {"remote": {"DAGQ_URL": live_api.url, "DAGQ_API_KEY": live_api.admin},
           "local": {"DAGQ_DATABASE_URL": db_url}}
    get_settings.cache_clear()


def cli(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
        env: dict[str, str], *args: str) -> tuple[int, str, str]:
    for name in ("DAGQ_URL", "DAGQ_API_KEY", "DAGQ_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    status = main(list(args))
    out, err = capfd.readouterr()
    return status, out, err.strip()


def failed_run(api: LiveApi) -> str:
    run_id = api.repo.submissions.submit_run(tenant="acme", spec=spec(FLOW)).run_id
    [node] = api.repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    api.repo.leases.fail(node.id, node.version, ERROR)
    return str(run_id)


@pytest.mark.parametrize("mode", ["remote", "local"])
def test_cancel_then_retry(mode: str, live_api: LiveApi, modes, monkeypatch, capfd) -> None:
    run_id = str(live_api.repo.submissions.submit_run(tenant="acme", spec=spec(FLOW)).run_id)
    assert cli(monkeypatch, capfd, modes[mode], "run", "cancel", run_id[:6]) == (
        0, f"cancelled run {run_id}: it is cancelled\n", "")
    assert live_api.repo.runs.get_run(run_id).status == "cancelled"
    # Cancelling a cancelled run changes nothing and says so alike.
    assert cli(monkeypatch, capfd, modes[mode], "run", "cancel", run_id)[0] == 0
    assert cli(monkeypatch, capfd, modes[mode], "run", "retry", run_id) == (
        0, f"retried run {run_id}: it is running\n", "")
    assert live_api.repo.runs.get_run(run_id).status == "running"


def test_run_show_summarises_a_failed_nodes_error(live_api: LiveApi, modes, monkeypatch,
                                                  capfd) -> None:
    run_id = failed_run(live_api)
    shown = {mode: cli(monkeypatch, capfd, env, "run", "show", run_id)
             for mode, env in modes.items()}
    assert shown["remote"] == shown["local"]
    status, out, _ = shown["local"]
    assert status == 0
    assert "error: node a: ValueError: document 7 has no text to summarize and more" in out
    assert "at /home/dev/project/tasks/summarize.py:42 in summarize" in out
    assert DAGQ_FILE not in out and DRAMATIQ_FILE not in out  # dagq's own frames left out
    assert '\\"' not in out and "--verbose" in out  # no escaped JSON
    status, verbose, _ = cli(monkeypatch, capfd, modes["local"], "run", "show", run_id,
                             "--verbose")
    assert status == 0 and DAGQ_FILE in "".join(verbose.split())  # (folded to the width)
    assert "and more words " * 30 in " ".join(verbose.split())


def test_the_error_summary_cuts_at_word_boundaries() -> None:
    assert shorten("alpha beta gamma delta", 15) == "alpha beta…"
    assert shorten("x" * 30, 10) == "x" * 9 + "…"
    assert one_line({"type": "KeyError", "message": "'docs'"}) == "KeyError: 'docs'"
    lines = error_lines(ERROR, "a")
    assert lines[0].startswith("node a: ValueError: document 7") and lines[0].endswith("…")
    assert lines[1:] == ["  at /home/dev/project/tasks/summarize.py:42 in summarize: "
                         'raise ValueError(f"document {doc_id} has no text to summarize")']
    assert error_lines("boom") == ["boom"]


def test_keys_list_and_revoke_through_the_api(live_api: LiveApi, modes, monkeypatch,
                                              capfd) -> None:
    status, out, _ = cli(monkeypatch, capfd, modes["remote"], "keys", "list", "--json")
    listed = json.loads(out)["keys"]
    assert status == 0 and sorted(k["tenant"] for k in listed) == ["acme", "acme", "globex"]
    assert live_api.globex not in out and "key_hash" not in out
    globex = next(k["id"] for k in listed if k["tenant"] == "globex")
    # The key works (and is cached by the API) ...
    headers = {"Authorization": f"Bearer {live_api.globex}"}
    assert httpx.get(f"{live_api.url}/v1/runs", headers=headers).status_code == 200
    # ... a non-admin key may not revoke; another tenant's key is not found for it.
    acme_key = {**modes["remote"], "DAGQ_API_KEY": live_api.acme}
    assert cli(monkeypatch, capfd, acme_key, "keys", "revoke", globex)[::2] == (
        1, f"dagq: error: API key {globex} not found")
    status, out, err = cli(monkeypatch, capfd, modes["remote"], "keys", "revoke", globex)
    assert status == 0 and err == "", err
    assert out.startswith(f"revoked key {globex} of tenant 'globex' (revoked ")
    assert "by key " in out
    assert httpx.get(f"{live_api.url}/v1/runs", headers=headers).status_code == 401
    status, out, _ = cli(monkeypatch, capfd, modes["remote"], "keys", "list")
    assert status == 0 and "3 key(s)" in out and out.count(" yes ") == 1


def test_keys_revoke_on_the_database(live_api: LiveApi, modes, monkeypatch, capfd,
                                     sql) -> None:
    status, out, _ = cli(monkeypatch, capfd, modes["local"], "keys", "list", "--tenant",
                         "globex", "--json")
    [globex] = json.loads(out)["keys"]
    assert status == 0 and globex["revoked_at"] is None
    status, out, _ = cli(monkeypatch, capfd, modes["local"], "keys", "revoke", globex["id"])
    assert status == 0 and out.endswith("by cli)\n")
    row = sql.execute("SELECT revoked_at, revoked_by FROM dagq.api_keys WHERE id = %s",
                      (globex["id"],)).fetchone()
    assert row["revoked_at"] is not None and row["revoked_by"] == "cli"
    headers = {"Authorization": f"Bearer {live_api.globex}"}  # never cached: refused
    assert httpx.get(f"{live_api.url}/v1/runs", headers=headers).status_code == 401
