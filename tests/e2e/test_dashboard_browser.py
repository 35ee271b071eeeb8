"""The dashboard in a real browser (issue 6): `dagq up` on its own embedded Postgres,
headless Chromium driven by Playwright opens a run while it executes and sees its nodes
turn succeeded without reloading; the runs list, queues and workers show up too. The
final page is saved as tests/artifacts/dashboard.png; with DAGQ_UPDATE_SCREENSHOT=1 it
also replaces docs/dashboard.png (the README and docs/dashboard.md show that one)."""

from __future__ import annotations

import json
import os
import shutil

import httpx
import pytest

from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS
from tests.harness.procs import ROOT

pytestmark = pytest.mark.e2e

SCREENSHOT = ROOT / "tests" / "artifacts" / "dashboard.png"
DOCS_SCREENSHOT = ROOT / "docs" / "dashboard.png"

# A few seconds of work: a map over three documents, a slow node and a flaky one that
# fails its first attempt, so the node panel has attempts, an error and outputs to show.
FLOW = {
    "name": "support-answer",
    "nodes": {
        "retrieve": {"executor": "builtin.echo",
                     "params": {"docs": ["invoice.pdf", "contract.pdf", "receipt.pdf"]}},
        "classify": {"executor": "builtin.sleep", "params": {"seconds": 2.5}},
        "per_doc": {"executor": "builtin.sleep", "depends_on": ["retrieve"],
                    "map": {"dep": "retrieve", "path": "params.docs"},
                    "params": {"seconds": 1}},
        "billing": {"executor": "builtin.fail", "depends_on": ["classify"],
                    "params": {"times": 1, "message": "billing API timed out"},
                    "backoff": {"initial_s": 0.3, "max_s": 1}},
        "aggregate": {"executor": "builtin.merge", "depends_on": ["per_doc", "billing"]},
    },
}


def node_statuses(page) -> dict[str, str]:
    return page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('svg.dag g.node')]"
        ".map(g => [g.dataset.key, g.dataset.status]))")


def test_dashboard_follows_a_run_live(dagq_up: str) -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: install Debian's chromium (./scripts/test does "
                    "so as root when apt-get can reach the archive)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is in the test extra: pip install -e .[test]")
    base = dagq_up

    # The workers route the ops panel reads.
    workers = httpx.get(f"{base}/v1/workers", timeout=5).json()["workers"]
    alive = [w for w in workers if w["status"] == "alive"]
    assert alive and alive[0]["threads"] == 4 and alive[0]["queues"]
    assert {"id", "hostname", "pid", "heartbeat_age_s", "running"} <= set(alive[0])
    bad = httpx.get(f"{base}/v1/workers?limit=0", timeout=5)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("console", lambda msg: problems.append(f"console: {msg.text}")
                    if msg.type == "error" else None)

            # The runs list with its ops panel: queues and the live worker.
            page.goto(f"{base}/#/runs")
            page.wait_for_selector("#workers-table tbody tr")
            page.wait_for_selector("#queues-table tr[data-queue='default']")
            # Remember this document: a reload would lose it.
            page.evaluate("() => { window.__sameDocument = true; }")

            submitted = httpx.post(f"{base}/v1/runs", json={"workflow": FLOW}, timeout=10)
            assert submitted.status_code == 201, submitted.text
            run_id = submitted.json()["run_id"]

            # The first event stream ends after two events without the run's terminal
            # event (as when a proxy or a restarting API drops it): the page must resume
            # with Last-Event-ID. Later connections reach the API untouched.
            connections: list[str | None] = []

            def cut_first_stream(route, request) -> None:
                connections.append(request.headers.get("last-event-id"))
                if len(connections) > 1:
                    route.continue_()
                    return
                events = httpx.get(f"{base}/v1/runs/{run_id}/events?format=json&limit=2",
                                   timeout=5).json()
                route.fulfill(status=200, headers={"content-type": "text/event-stream"},
                              body="".join(f"id: {e['id']}\nevent: {e['type']}\n"
                                           f"data: {json.dumps(e)}\n\n" for e in events))

            page.route("**/v1/runs/*/events", cut_first_stream)

            # Open the run while it executes (a hash change: no reload).
            page.evaluate("(id) => { location.hash = '#/runs/' + id; }", run_id)
            page.wait_for_selector("svg.dag g.node[data-key='aggregate'][data-status]")
            page.evaluate("""() => {
                window.__seen = [];
                new MutationObserver((changes) => {
                    for (const c of changes) {
                        window.__seen.push(c.target.dataset.key + '=' + c.target.dataset.status);
                    }
                }).observe(document.querySelector('svg.dag'),
                           {subtree: true, attributes: true, attributeFilter: ['data-status']});
            }""")
            first = node_statuses(page)
            assert set(first) == set(FLOW["nodes"])
            assert first["aggregate"] != "succeeded", first
            assert any(s != "succeeded" for s in first.values()), first

            # Every node turns succeeded, driven by the event stream alone.
            page.wait_for_function(
                "() => { const g = [...document.querySelectorAll('svg.dag g.node')];"
                " return g.length === 5 && g.every(n => n.dataset.status === 'succeeded'"
                " && n.classList.contains('status-succeeded')); }", timeout=30_000)
            assert page.evaluate("() => window.__sameDocument === true"), "the page reloaded"
            seen = page.evaluate("() => window.__seen")
            # Nodes that were not done when the page opened changed colour in place.
            for key, status in first.items():
                if status != "succeeded":
                    assert f"{key}=succeeded" in seen, (key, first, seen)
            page.wait_for_selector("#run-status .badge[data-status='succeeded']")
            page.wait_for_selector("#live-state[data-state='finished']")
            server_events = httpx.get(f"{base}/v1/runs/{run_id}/events?format=json",
                                      timeout=5).json()
            assert connections[:2] == [None, str(server_events[1]["id"])], connections
            page.wait_for_function(
                "(n) => document.querySelectorAll('.events-table tbody tr').length === n",
                arg=len(server_events))
            shown = page.evaluate("() => [...document.querySelectorAll("
                                  "'.events-table tbody tr td:first-child')]"
                                  ".map(td => Number(td.textContent))")
            assert sorted(shown) == [e["id"] for e in server_events]  # no gap, no repeat
            colour = page.evaluate(
                "() => getComputedStyle(document.querySelector("
                "\"g.node[data-key='aggregate'] rect.box\")).fill")
            assert colour == "rgb(217, 245, 225)", colour  # --succeeded-bg

            # The node panel: attempts (a retry, then success), the earlier error, outputs.
            page.click("svg.dag g.node[data-key='billing']")
            panel = page.locator("#node-panel")
            panel.locator("table.attempts tbody tr").nth(1).wait_for()
            text = panel.inner_text()
            assert "billing API timed out" in text and "retry" in text
            assert "2 of 3" in text and '"attempt": 2' in text
            assert "#/runs/" in page.url and "node=billing" in page.url
            SCREENSHOT.parent.mkdir(exist_ok=True)
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
            if os.environ.get("DAGQ_UPDATE_SCREENSHOT") == "1":
                shutil.copyfile(SCREENSHOT, DOCS_SCREENSHOT)

            # Back to the list: the run is there, succeeded.
            page.click("a:has-text('← Runs')")
            page.wait_for_selector(f"#runs-table tr[data-run-id='{run_id}']"
                                   "[data-status='succeeded']")
            page.click("button.chip[data-status='failed']")
            page.wait_for_function("() => location.hash.includes('status=failed')")
            page.wait_for_selector("text=No runs match these filters.")
            assert page.evaluate("() => window.__sameDocument === true"), "the page reloaded"
            assert not problems, problems
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
