"""`dagq runs` and `dagq run show` print what tenants wrote (a node's outputs, a tenant's
name) as it is: text that looks like Rich markup (`[/x]`, `[bold]`) neither crashes the
command nor is styled away."""

from __future__ import annotations

from dagq.cli import main, views
from dagq.config import get_settings
from dagq.store import Store
from tests.harness.drive import drive
from tests.harness.specs import spec

OUTPUTS = {"say": "[/oops] [bold]not bold[/bold]"}


def cli(monkeypatch, capfd, db_url: str, *args: str) -> tuple[int, str, str]:
    monkeypatch.delenv("DAGQ_URL", raising=False)
    monkeypatch.setenv("DAGQ_DATABASE_URL", db_url)
    # The wide runs table (with the tenant). The console read COLUMNS when it was made,
    # perhaps by an earlier test in this process: its width is set directly too.
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(views.out, "width", 200)
    get_settings.cache_clear()
    try:
        status = main(list(args))
    finally:
        get_settings.cache_clear()
    out, err = capfd.readouterr()
    return status, out, err.strip()


def test_outputs_and_names_that_look_like_markup_are_shown_as_they_are(
        monkeypatch, capfd, db_url, repo: Store) -> None:
    run_id = repo.submissions.submit_run(
        tenant="[/t]", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
    drive(repo, {"a": lambda _: OUTPUTS})
    status, out, err = cli(monkeypatch, capfd, db_url, "run", "show", str(run_id))
    assert status == 0, err
    assert "[/oops] [bold]not bold" in out and "tenant [/t]" in out
    status, out, err = cli(monkeypatch, capfd, db_url, "runs")
    assert status == 0, err
    assert "[/t]" in out
