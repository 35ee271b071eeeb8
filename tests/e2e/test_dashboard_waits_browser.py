"""The approval example in the dashboard (issue 16), in a real browser on `dagq up`: the
waiting node has its own colour and says what it waits for; the node panel's form
sends the signal, and the run finishes on the branch the signal chose."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS
from tests.harness.procs import ROOT

pytestmark = pytest.mark.e2e

APPROVAL = json.loads((ROOT / "examples" / "approval.json").read_text())


def test_a_waiting_node_is_shown_and_its_signal_sent_from_the_panel(dagq_up: str) -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    base = dagq_up
    submitted = httpx.post(f"{base}/v1/runs", json={"workflow": APPROVAL}, timeout=10)
    assert submitted.status_code == 201, submitted.text
    run_id = submitted.json()["run_id"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.goto(f"{base}/#/runs/{run_id}")
            node = "svg.dag g.node[data-key='approve']"
            page.wait_for_selector(f"{node}[data-status='waiting']", timeout=30_000)
            assert "for approval" in page.locator(node).text_content()
            colour = page.evaluate(
                f"() => getComputedStyle(document.querySelector(\"{node} rect.box\")).fill")
            assert colour == "rgb(255, 243, 196)", colour  # --waiting-bg
            page.click(node)
            panel = page.locator("#node-panel")
            panel.locator("form.signal-form").wait_for()
            text = panel.inner_text()
            assert "signal approval (after 86400s: fail)" in text
            assert "Attempts" not in text  # a wait runs no attempt
            panel.locator("textarea.signal-data").fill('{"approved": true, "by": "ana"}')
            panel.locator("form.signal-form button").click()
            page.wait_for_selector("svg.dag g.node[data-key='send'][data-status='succeeded']",
                                   timeout=30_000)
            page.wait_for_selector("svg.dag g.node[data-key='discard'][data-status='skipped']")
            page.wait_for_selector("#run-status .badge[data-status='succeeded']")
            assert not problems, problems
        finally:
            browser.close()
    run = httpx.get(f"{base}/v1/runs/{run_id}", timeout=5).json()
    approve = next(n for n in run["nodes"] if n["key"] == "approve")
    assert approve["outputs"]["data"] == {"approved": True, "by": "ana"}
