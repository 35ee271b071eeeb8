"""The dashboard's pauses panel in headless Chromium under the API's CSP (issue 32, item
3): the active pauses listed with who and why, a paused badge on a run of a paused
workflow, and the Resume button ending the pause (recorded, the badge gone). No page
error, no CSP violation."""

from __future__ import annotations

import re

import pytest

from dagq import service
from dagq.service import pauses
from dagq.store import Store
from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS
from tests.harness.e2e import start_api
from tests.harness.procs import WorkerFleet
from tests.harness.specs import spec

pytestmark = pytest.mark.e2e

# Chromium logs the 401s of the first load (no key yet).
EXPECTED_CONSOLE = re.compile(r"^Failed to load resource: the server responded with a "
                              r"status of 401 ")


def test_pauses_panel_badge_and_resume(fleet: WorkerFleet, repo: Store, sql) -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (./scripts/test installs it as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    base = start_api(fleet)  # DAGQ_AUTH=on: an admin key in the key box
    admin = service.create_api_key(repo, "ops", admin=True)
    pause, _ = pauses.pause(repo, None, kind="workflow", name="held", reason="bad deploy")
    run_id = repo.submissions.submit_run(
        tenant="t", spec=spec({"a": {"executor": "builtin.noop"}}, name="held")).run_id
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("console", lambda msg: problems.append(f"console: {msg.text}")
                    if msg.type == "error" and not EXPECTED_CONSOLE.match(msg.text) else None)
            page.goto(f"{base}/#/runs")
            page.fill("#apikey", admin)
            page.click("#keybox button[type=submit]")
            row = f"#pauses-table tr[data-pause-id='{pause.id}']"
            page.wait_for_selector(row)
            assert "workflow held" in page.inner_text(row)
            assert "bad deploy" in page.inner_text(row)
            badge = f"tr[data-run-id='{run_id}'] .badge.paused"
            page.wait_for_selector(badge)
            assert "bad deploy" in (page.get_attribute(badge, "title") or "")
            page.click(f"{row} button.resume")
            page.wait_for_selector("#no-pauses")
            page.wait_for_selector(badge, state="detached", timeout=10_000)
            assert not problems, problems
        finally:
            browser.close()
    ended = sql.execute("SELECT resumed_at, resumed_by FROM dagq.pauses WHERE id = %s",
                        (pause.id,)).fetchone()
    assert ended["resumed_at"] is not None and ended["resumed_by"].startswith("admin key")
