"""`dagq webhooks show|deliveries|list` print what receivers and tenants wrote (a reply's
first bytes, an error, a URL) as it is: text that looks like Rich markup (`[/x]`,
`[bold]`) neither crashes the command nor is styled away."""

from __future__ import annotations

import json

from dagq.cli import main
from dagq.config import Settings, get_settings
from dagq.store import Store
from dagq.sweeper.passes import Sweeper
from tests.harness.drive import drive
from tests.harness.receiver import Receiver
from tests.harness.specs import spec

REPLY = b"[/oops] [bold]not bold[/bold]"


def cli(monkeypatch, capfd, db_url: str, *args: str) -> tuple[int, str, str]:
    monkeypatch.delenv("DAGQ_URL", raising=False)
    monkeypatch.setenv("DAGQ_DATABASE_URL", db_url)
    monkeypatch.setenv("DAGQ_HTTP_ALLOW", "127.0.0.1")
    get_settings.cache_clear()
    try:
        status = main(list(args))
    finally:
        get_settings.cache_clear()
    out, err = capfd.readouterr()
    return status, out, err.strip()


def test_a_reply_that_looks_like_markup_is_shown_as_it_is(monkeypatch, capfd, db_url,
                                                          repo: Store) -> None:
    settings = Settings(_env_file=None, http_allow="127.0.0.1")  # type: ignore[call-arg]
    with Receiver() as receiver:
        receiver.reply = REPLY
        url = receiver.url + "?q=[/x]"
        status, _, err = cli(monkeypatch, capfd, db_url, "webhooks", "add", url,
                             "--events", "run_succeeded", "--tenant", "acme")
        assert status == 0, err
        repo.submissions.submit_run(tenant="acme",
                                    spec=spec({"a": {"executor": "builtin.noop"}}))
        drive(repo)
        assert Sweeper(repo, settings).webhooks()["webhooks_delivered"] == 1
    status, out, _ = cli(monkeypatch, capfd, db_url, "webhooks", "deliveries", "--tenant",
                         "acme", "--json")
    [delivery] = json.loads(out)["deliveries"]
    status, out, err = cli(monkeypatch, capfd, db_url, "webhooks", "show", delivery["id"],
                           "--tenant", "acme")
    assert status == 0, err
    assert "[/oops]" in out and "[bold]not bold[/bold]" in out
    status, out, err = cli(monkeypatch, capfd, db_url, "webhooks", "list", "--tenant", "acme")
    assert status == 0 and "[/x]" in out, err
