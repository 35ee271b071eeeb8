"""`dagq webhooks` on the database: add (the secret printed once, an unsafe URL refused
with exit 2 and nothing written), list without secrets, deliveries and show with their
attempts, redeliver, remove; another tenant's delivery is not found."""

from __future__ import annotations

import json

import pytest

from dagq.cli import main
from dagq.config import Settings, get_settings
from dagq.store import Store
from dagq.sweeper.passes import Sweeper
from tests.harness.drive import drive
from tests.harness.receiver import Receiver
from tests.harness.specs import spec


def cli(monkeypatch, capfd, db_url: str, *args: str, allow: bool = True
        ) -> tuple[int, str, str]:
    monkeypatch.delenv("DAGQ_URL", raising=False)
    monkeypatch.setenv("DAGQ_DATABASE_URL", db_url)
    monkeypatch.setenv("DAGQ_HTTP_ALLOW", "127.0.0.1" if allow else "")
    get_settings.cache_clear()
    try:
        status = main(list(args))
    finally:
        get_settings.cache_clear()
    out, err = capfd.readouterr()
    return status, out, err.strip()


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def test_add_list_deliveries_redeliver_remove(monkeypatch, capfd, db_url, repo: Store,
                                              sql, receiver) -> None:
    status, out, _ = cli(monkeypatch, capfd, db_url, "webhooks", "add", receiver.url,
                         "--events", "run_succeeded,run_failed", "--tenant", "acme")
    assert status == 0
    webhook_id, secret = out.split()[1], out.strip().splitlines()[-1]
    assert secret.startswith("whsec_")
    status, out, _ = cli(monkeypatch, capfd, db_url, "webhooks", "list", "--tenant", "acme",
                         "--json")
    [listed] = json.loads(out)["webhooks"]
    assert listed["id"] == webhook_id and "secret" not in listed
    repo.submissions.submit_run(tenant="acme", spec=spec({"a": {"executor": "builtin.noop"}}))
    drive(repo)
    receiver.answer(500)
    settings = Settings(_env_file=None, http_allow="127.0.0.1")  # type: ignore[call-arg]
    Sweeper(repo, settings).webhooks()
    status, out, _ = cli(monkeypatch, capfd, db_url, "webhooks", "deliveries", "--tenant",
                         "acme", "--status", "pending", "--json")
    [delivery] = json.loads(out)["deliveries"]
    status, out, _ = cli(monkeypatch, capfd, db_url, "webhooks", "show", delivery["id"],
                         "--tenant", "acme")
    assert status == 0 and "500" in out and "HTTP 500" in out
    status, _, err = cli(monkeypatch, capfd, db_url, "webhooks", "show", delivery["id"],
                         "--tenant", "globex")
    assert status == 1 and "not found" in err
    status, out, _ = cli(monkeypatch, capfd, db_url, "webhooks", "redeliver", delivery["id"],
                         "--tenant", "acme")
    assert status == 0 and "due again" in out
    assert Sweeper(repo, settings).webhooks()["webhooks_delivered"] == 1
    status, out, _ = cli(monkeypatch, capfd, db_url, "webhooks", "remove", webhook_id,
                         "--tenant", "acme")
    assert status == 0
    assert sql.execute("SELECT count(*) AS n FROM dagq.webhooks").fetchone()["n"] == 0


def test_an_unsafe_url_or_event_is_refused(monkeypatch, capfd, db_url, sql) -> None:
    status, _, err = cli(monkeypatch, capfd, db_url, "webhooks", "add",
                         "http://127.0.0.1:9/x", "--events", "run_failed", allow=False)
    assert status == 2 and "loopback" in err
    status, _, err = cli(monkeypatch, capfd, db_url, "webhooks", "add",
                         "https://example.com/x", "--events", "run_started")
    assert status == 2 and "unknown webhook event" in err
    status, _, err = cli(monkeypatch, capfd, db_url, "webhooks", "add", "https://example.com/x",
                         "--events", "run_failed", "--secret", "short")
    assert status == 2 and "16 to 200 characters" in err
    assert sql.execute("SELECT count(*) AS n FROM dagq.webhooks").fetchone()["n"] == 0
