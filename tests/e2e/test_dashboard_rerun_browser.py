"""The node panel's "rerun from here" in a real browser (issue 17), on the API in
process (no workers: the test runs the nodes through the store): the button makes the
rerun and opens its page, which links back to the run it reruns; a sub-workflow node's
child runs and a run's parent are linked when the API gives them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS
from tests.harness.drive import drive
from tests.harness.live_api import LiveApi
from tests.harness.specs import spec

pytestmark = pytest.mark.e2e

# What GET /v1/runs/{id} gives for runs made of runs (children, parent): the panel's
# children section and the summary's facts, rendered from those fields.
CHILD_PARTS = """async () => {
  const links = await import("/static/run/links.js");
  const kid = (id, i, status) => ({run_id: `${id}-0000-0000-0000-000000000000`,
                                   node_key: "each", item_index: i, status});
  const run = {status: "running",
    children: [kid("22222222", 1, "queued"), kid("11111111", 0, "succeeded")],
    parent_run_id: "33333333-0000-0000-0000-000000000000", parent_node_key: "outer"};
  const node = {key: "each", workflow: {name: "summarize", version: 3}, items: 2,
                items_done: 1, items_failed: 0};
  const box = document.createElement("div");
  box.append(...links.childrenSection(run, node), ...links.relativeFacts(run),
             ...links.rerunSection(run, node));
  const plain = document.createElement("div");
  plain.append(...links.childrenSection({status: "failed"}, {key: "x"}),
               ...links.relativeFacts({}));
  return {text: box.innerText,
          hrefs: [...box.querySelectorAll("a")].map((a) => a.getAttribute("href")),
          buttons: box.querySelectorAll("button").length, plain: plain.childNodes.length};
}"""


@pytest.fixture
def live(db_url: str) -> Iterator[LiveApi]:
    with LiveApi(db_url, auth="off") as api:
        yield api


def test_rerun_from_a_node_in_the_panel(live: LiveApi) -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    wf = spec({"a": {"executor": "builtin.echo"},
               "b": {"executor": "builtin.echo", "depends_on": ["a"]},
               "c": {"executor": "builtin.merge", "depends_on": ["b"]}}, name="chain")
    first = live.repo.submissions.submit_run(tenant="default", spec=wf).run_id
    drive(live.repo)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.goto(f"{live.url}/#/runs/{first}?node=b")
            page.click("#node-panel button.rerun-here")
            page.wait_for_selector(f"a.rerun-of[title='{first}']", timeout=15_000)
            new_id = page.evaluate("() => decodeURIComponent(location.hash.split('/')[2])")
            rerun = live.repo.runs.get_run(new_id)
            assert rerun.rerun_of == first
            assert {n.key: n.status for n in rerun.nodes} == {
                "a": "succeeded", "b": "queued", "c": "pending"}
            assert drive(live.repo) == ["b", "c"]
            page.wait_for_selector("#run-status .badge[data-status='succeeded']",
                                   timeout=15_000)
            page.click("svg.dag g.node[data-key='a']")
            page.wait_for_selector(f"#node-panel a.copied-from[title='{first}']")
            parts = page.evaluate(CHILD_PARTS)
            assert "1 of 2 done" in parts["text"] and "workflow summarize v3" in parts["text"]
            assert parts["hrefs"] == ["#/runs/11111111-0000-0000-0000-000000000000",
                                      "#/runs/22222222-0000-0000-0000-000000000000",
                                      "#/runs/33333333-0000-0000-0000-000000000000",
                                      "#/runs/33333333-0000-0000-0000-000000000000?node=outer"]
            assert parts["buttons"] == 0  # an open run: no rerun button
            assert parts["plain"] == 0  # without those fields: nothing
            assert not problems, problems
        finally:
            browser.close()
