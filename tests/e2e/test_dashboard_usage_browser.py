"""The node panel's usage section in a real browser, on the API in process (no workers:
the test writes the attempt's usage through the store, as a worker would): a node that
reported usage shows its tokens and cost per attempt and model; one that did not shows
no section."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dagq.store import Completion
from dagq.usage import UsageRecord
from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS
from tests.harness.live_api import LiveApi
from tests.harness.specs import spec

pytestmark = pytest.mark.e2e


@pytest.fixture
def live(db_url: str) -> Iterator[LiveApi]:
    with LiveApi(db_url, auth="off") as api:
        yield api


def test_the_node_panel_shows_tokens_and_cost(live: LiveApi) -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    wf = spec({"llm": {"executor": "builtin.noop"},
               "after": {"executor": "builtin.noop", "depends_on": ["llm"]}}, name="spend")
    run_id = live.repo.submissions.submit_run(tenant="default", spec=wf).run_id
    for _ in range(2):
        [node] = live.repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
        usage = (UsageRecord(node.id, node.version, 1, node.run_id, node.node_key,
                             node.attempts, node.executor, "gpt-test", 1200, 345, 0.0123),
                 ) if node.node_key == "llm" else ()
        live.repo.leases.complete_and_lease(
            [Completion(node.id, node.version, {}, run_id=run_id, usage=usage)], None)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.goto(f"{live.url}/#/runs/{run_id}?node=llm")
            total = page.wait_for_selector("#node-panel [data-usage-total]", timeout=15_000)
            assert total.inner_text() == "1,545 tokens (1,200 in, 345 out), $0.0123"
            cells = page.eval_on_selector_all("#node-panel table.usage td",
                                              "(tds) => tds.map((td) => td.innerText)")
            assert cells == ["1", "gpt-test", "1", "1,200", "345", "$0.0123"]
            page.click("svg.dag g.node[data-key='after']")
            page.wait_for_selector("#node-panel h2[title='after']")
            assert page.query_selector("#node-panel [data-usage-total]") is None
            assert not problems, problems
        finally:
            browser.close()
