"""Wait forms in a real browser on `dagq up` (issue 33 item 4): the respond page
/respond/<token> renders the wait's form from the link alone (no API key), shows the API's
422 next to the field it names, submits once, then says the link is used; text from the
form is set as text; the run page's node panel shows an open wait's form and sends it.
No page error and no Content-Security-Policy report on the way."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.e2e

FORM: dict[str, Any] = {
    "title": "Approve the refund",
    "description": "<img src=x id=injected> is text, not markup",
    "properties": {
        "approved": {"type": "boolean", "title": "Approved"},
        "by": {"type": "string", "title": "Your name"},
        "tier": {"enum": ["gold", "silver"]},
        "amount": {"type": "number", "default": 10},
        # Names an object inherits in JavaScript: neither prefilled from Object.prototype
        # ("function Object() { [native code] }") nor dropped when sent.
        "constructor": {"type": "string", "title": "Reference"},
        "__proto__": {"type": "string", "title": "Code"},
    },
    "required": ["by"],
}
FLOW = {"name": "refund", "nodes": {
    "approve": {"wait": {"signal": "approval", "form": FORM, "assignees": ["ann"]}},
    "send": {"executor": "builtin.noop", "depends_on": ["approve"],
             "if": {"dep": "approve", "path": "data.approved", "in": [True]}}}}


def waiting_run(base: str) -> tuple[str, str]:
    run_id = httpx.post(f"{base}/v1/runs", json={"workflow": FLOW}, timeout=10).json()["run_id"]
    [wait] = httpx.get(f"{base}/v1/runs/{run_id}/waits", timeout=10).json()["waits"]
    return run_id, wait["respond"]["token"]


def outputs(base: str, run_id: str) -> dict[str, Any]:
    run = httpx.get(f"{base}/v1/runs/{run_id}", timeout=5).json()
    return next(n for n in run["nodes"] if n["key"] == "approve")["outputs"]


def respond_by_link(page: Any, base: str, token: str) -> None:
    page.goto(f"{base}/respond/{token}")
    page.wait_for_selector("form.respond-form")
    assert page.locator("h1").inner_text() == "Approve the refund"
    assert "<img src=x id=injected> is text" in page.locator("main").inner_text()
    assert page.locator("#injected").count() == 0
    assert page.locator("[data-field='amount']").input_value() == "10"  # the default
    assert page.locator("[data-field='constructor']").input_value() == ""
    page.fill("[data-field='__proto__']", "c-1")
    page.check("[data-field='approved']")
    page.select_option("[data-field='tier']", label="silver")
    page.click("form.respond-form button")  # no name yet: the API's 422 names the field
    problem = page.locator("[data-row='by'] .form-problem")
    problem.wait_for()
    assert "'by' is required" in problem.inner_text()
    page.fill("[data-field='by']", "ana")
    page.click("form.respond-form button")
    page.wait_for_selector(".respond-done")
    page.reload()
    page.wait_for_selector(".respond-closed[data-code='link_used']")


def test_the_respond_page_and_the_run_page_send_a_wait_form(dagq_up: str) -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    base = dagq_up
    by_link, link = waiting_run(base)
    by_panel, _ = waiting_run(base)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            page = context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("console", lambda m: problems.append(m.text)
                    if m.type == "error" and "Content Security Policy" in m.text else None)
            respond_by_link(page, base, link)
            page.goto(f"{base}/respond/dqr_%E0%A4%A")  # not percent-decodable: still says so
            page.wait_for_selector(".respond-closed")
            page.goto(f"{base}/#/runs/{by_panel}")
            node = "svg.dag g.node[data-key='approve']"
            page.wait_for_selector(f"{node}[data-status='waiting']", timeout=30_000)
            page.click(node)
            form = page.locator("#node-panel form.wait-form")
            form.wait_for()
            assert "Assignees: ann" in form.inner_text()
            form.locator("[data-field='by']").fill("bo")
            form.locator("button").click()
            page.wait_for_selector("svg.dag g.node[data-key='send'][data-status='skipped']",
                                   timeout=30_000)
            assert not problems, problems
        finally:
            browser.close()
    assert outputs(base, by_link)["data"] == {"approved": True, "by": "ana", "tier": "silver",
                                              "amount": 10, "__proto__": "c-1"}
    assert outputs(base, by_panel)["data"] == {"approved": False, "by": "bo", "amount": 10}
