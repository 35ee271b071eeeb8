"""The dashboard shows a node's streamed text live: a run of builtin.stream under
`dagq up`, its node selected, text growing in the node panel while the node runs."""

from __future__ import annotations

import httpx
import pytest

from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.e2e

STREAMING = {"name": "stream-demo", "nodes": {"llm": {
    "executor": "builtin.stream", "params": {"chunks": 60, "interval_s": 0.05,
                                             "text": "token{i} "}}}}


def test_the_node_panel_shows_streamed_text_live(dagq_up: str) -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (./scripts/test installs it as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    base = dagq_up
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            submitted = httpx.post(f"{base}/v1/runs", json={"workflow": STREAMING}, timeout=10)
            assert submitted.status_code == 201, submitted.text
            run_id = submitted.json()["run_id"]
            page.goto(f"{base}/#/runs/{run_id}?node=llm")
            text = page.locator("#node-panel pre.stream-text")
            text.wait_for(timeout=30_000)
            page.wait_for_function(
                "() => { const p = document.querySelector('#node-panel pre.stream-text');"
                " return p && p.textContent.includes('token3 '); }", timeout=30_000)
            partial = text.text_content()
            assert "token59" not in partial, "the text should appear while the node runs"
            everything = "".join(f"token{i} " for i in range(60))
            page.wait_for_function(
                "(t) => document.querySelector('#node-panel pre.stream-text').textContent === t",
                arg=everything, timeout=30_000)
            page.wait_for_selector("#run-status .badge[data-status='succeeded']")
            assert "attempt 1 · 60 chunks" in page.locator(
                "#node-panel .stream-meta").text_content()
            assert not problems, problems
        finally:
            browser.close()
