"""The dashboard for big runs (issue 34, item 6) in a real browser: a 200-node run that
partly fails is opened; the graph is fitted, zoomed (buttons and wheel) and panned, with a
minimap while it is bigger than the view; the status filter dims, the search box
highlights and centres a node; the timeline shows every node's attempts (a retry with its
backoff); the run's inputs and outputs are on its page; the runs list shows the failed
node with the first line of its error and passes the metadata filter on (a 422 is said
beside the box). User-controlled text (an error, inputs) is shown as text, never markup.

Screenshots go to tests/artifacts/; with DAGQ_UPDATE_SCREENSHOT=1 they also replace
docs/dashboard-big-run.png, docs/dashboard-search.png and docs/dashboard-timeline.png
(docs/dashboard.md shows them)."""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

import httpx
import pytest

from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS
from tests.harness.procs import ROOT

pytestmark = pytest.mark.e2e

ARTIFACTS = ROOT / "tests" / "artifacts"
LAYERS, WIDTH = 20, 10  # 200 nodes
XSS = "<img src=x onerror=\"window.__xss=1\">"


def big_flow() -> dict[str, Any]:
    """20 layers of 10 nodes, each depending on one or two nodes of the layer before; one
    node fails once then succeeds (a retry with backoff), one fails for good (its
    descendants are skipped: fail_fast is off), the rest are no-ops."""
    nodes: dict[str, Any] = {}
    for layer in range(LAYERS):
        for i in range(WIDTH):
            node: dict[str, Any] = {"executor": "builtin.noop"}
            if layer:
                before = f"n_{layer - 1}_"
                node["depends_on"] = sorted({f"{before}{i}", f"{before}{(i * 3) % WIDTH}"})
            nodes[f"n_{layer}_{i}"] = node
    nodes["n_3_4"] = {**nodes["n_3_4"], "executor": "builtin.fail",
                      "params": {"times": 1, "message": "flaky upstream"},
                      "backoff": {"initial_s": 0.5, "max_s": 1}}
    nodes["n_12_7"] = {**nodes["n_12_7"], "executor": "builtin.fail", "max_attempts": 1,
                       "params": {"message": f"{XSS} broke\nsecond line of the error"}}
    return {"name": "big-run", "fail_fast": False, "nodes": nodes}


def finished(base: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = httpx.get(f"{base}/v1/runs/{run_id}", timeout=10).json()
        if run["finished_at"]:
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish: {run['status']}")


def shoot(page, name: str) -> None:
    """A screenshot of the graph (or timeline) and the node panel, scrolled to them."""
    page.evaluate("() => document.querySelector('.run-body').scrollIntoView()")
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    if os.environ.get("DAGQ_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(path, ROOT / "docs" / name)


def zoom(page) -> float:
    return float(page.get_attribute("svg.dag", "data-zoom"))


def test_a_200_node_run_on_the_dashboard(dagq_up: str) -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: install Debian's chromium (./scripts/test does "
                    "so as root when apt-get can reach the archive)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is in the test extra: pip install -e .[test]")
    base = dagq_up
    submitted = httpx.post(f"{base}/v1/runs", json={
        "workflow": big_flow(), "inputs": {"note": "<b>not bold</b>", "docs": 3}}, timeout=30)
    assert submitted.status_code == 201, submitted.text
    run_id = submitted.json()["run_id"]
    run = finished(base, run_id)
    assert run["status"] == "partial_succeeded", run["status"]
    statuses = {n["key"]: n["status"] for n in run["nodes"]}
    assert statuses["n_12_7"] == "failed" and statuses["n_3_4"] == "succeeded"
    assert "skipped" in statuses.values()

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("console", lambda msg: problems.append(f"console: {msg.text}")
                    if msg.type == "error" and "422" not in msg.text else None)
            check_runs_list(page, base, run_id)
            check_graph(page, base, run_id)
            check_filter_and_search(page)
            check_timeline(page)
            check_run_data(page, base, run_id)
            check_timeline_model(page)
            assert page.evaluate("() => window.__xss") is None, "an error was run as markup"
            assert not problems, problems
        finally:
            browser.close()


def check_runs_list(page, base: str, run_id: str) -> None:
    """The failed node and the first line of its error, as text; the metadata filter goes
    to the API as meta.k=v, and a 422 for it is said beside the box."""
    page.goto(f"{base}/#/runs")
    row = page.locator(f"#runs-table tr[data-run-id='{run_id}']")
    row.wait_for()
    failure = row.locator("td.failure")
    assert failure.locator(".fnode").inner_text() == "n_12_7"
    text = failure.inner_text()
    assert XSS in text and "RuntimeError" in text and "second line" not in text, text
    assert failure.locator("img").count() == 0
    assert failure.locator("a.fnode").get_attribute("href") == f"#/runs/{run_id}?node=n_12_7"

    page.fill("#meta-filter", "conversation_id=c-42 meta.user=u 7")
    page.press("#meta-filter", "Enter")
    page.wait_for_selector("#meta-note.error-text")  # "7" is not key=value: nothing sent
    assert "not key=value" in page.inner_text("#meta-note")
    page.fill("#meta-filter", "conversation_id=c-42 meta.user=u&7")
    with page.expect_request(lambda r: "/v1/runs?" in r.url and "meta." in r.url) as sent:
        page.press("#meta-filter", "Enter")
    assert "meta.conversation_id=c-42" in sent.value.url, sent.value.url
    assert "meta.user=u%267" in sent.value.url, sent.value.url
    assert "meta.conversation_id=c-42" in page.url
    assert page.input_value("#meta-filter") == "conversation_id=c-42 user=u&7"

    # An API that refuses the filter: said beside the box, the list is read without it.
    def refuse(route, request) -> None:
        if "meta." in request.url:
            route.fulfill(status=422, content_type="application/json",
                          body='{"error": {"code": "invalid_request", "message": '
                               '"unknown metadata key"}}')
        else:
            route.continue_()

    page.route("**/v1/runs?*", refuse)
    page.fill("#meta-filter", "tier=gold")
    page.press("#meta-filter", "Enter")
    page.wait_for_function("() => (document.querySelector('#meta-note') || {}).textContent"
                           "?.includes('unknown metadata key')")
    page.wait_for_selector(f"#runs-table tr[data-run-id='{run_id}']")
    page.unroute("**/v1/runs?*")


def check_graph(page, base: str, run_id: str) -> None:
    """Fitted at first (all of it in view, no minimap); zoomed in with the buttons and
    the wheel (the minimap appears); panned by a drag; a click still opens a node."""
    page.goto(f"{base}/#/runs/{run_id}")
    page.wait_for_function("() => document.querySelectorAll('svg.dag g.node').length === 200")
    page.wait_for_selector("#live-state[data-state='finished']")
    page.wait_for_selector(".events-table tbody tr")
    fitted = zoom(page)
    assert fitted < 0.5, fitted
    view = page.locator("#graph-view").bounding_box()
    graph = page.locator("svg.dag g.viewport").bounding_box()
    assert graph["width"] <= view["width"] + 1 and graph["height"] <= view["height"] + 1
    assert page.get_attribute("svg.minimap", "data-shown") == "false"
    shoot(page, "dashboard-big-run.png")

    page.click("button[data-zoom='in']")
    assert zoom(page) == pytest.approx(fitted * 1.25, rel=0.01)
    view = page.locator("#graph-view").bounding_box()  # where it is after the scroll
    page.mouse.move(view["x"] + view["width"] / 2, view["y"] + view["height"] / 2)
    page.mouse.wheel(0, -600)
    page.wait_for_function("(z) => Number(document.querySelector('svg.dag').dataset.zoom) > z",
                           arg=fitted * 1.5)
    assert page.get_attribute("svg.minimap", "data-shown") == "true"
    assert page.locator("svg.minimap").is_visible()
    # A press on the minimap's right end shows the graph's end: the last layer in view.
    frame_x = float(page.get_attribute("svg.minimap rect.mm-frame", "x"))
    mini = page.locator("svg.minimap").bounding_box()
    page.mouse.click(mini["x"] + mini["width"] - 3, mini["y"] + mini["height"] / 2)
    assert float(page.get_attribute("svg.minimap rect.mm-frame", "x")) > frame_x
    last = page.locator(f"svg.dag g.node[data-key='n_{LAYERS - 1}_0'] rect.box").bounding_box()
    assert view["x"] < last["x"] < view["x"] + view["width"]

    before = page.get_attribute("svg.dag g.viewport", "transform")
    x, y = view["x"] + 40, view["y"] + 40
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 120, y + 90, steps=5)
    page.mouse.up()
    assert page.get_attribute("svg.dag g.viewport", "transform") != before
    assert "node=" not in page.url  # a drag is not a click

    page.click("button[data-zoom='fit']")
    assert zoom(page) == pytest.approx(fitted, rel=0.01)


def centre_offset(page, key: str) -> float:
    """How far a node's centre is from the graph view's centre, in pixels."""
    return page.evaluate("""(key) => {
        const v = document.querySelector('#graph-view').getBoundingClientRect();
        const n = document.querySelector(`svg.dag g.node[data-key="${key}"] rect.box`)
            .getBoundingClientRect();
        return Math.hypot(n.x + n.width / 2 - (v.x + v.width / 2),
                          n.y + n.height / 2 - (v.y + v.height / 2));
    }""", key)


def check_filter_and_search(page) -> None:
    opacity = ("(k) => getComputedStyle("
               "document.querySelector(`svg.dag g.node[data-key='${k}']`)).opacity")
    assert int(page.inner_text("[data-count='skipped']")) > 0
    page.uncheck("input[data-status='succeeded']")
    assert float(page.evaluate(opacity, "n_0_0")) < 0.5  # succeeded: dimmed
    assert float(page.evaluate(opacity, "n_12_7")) == 1  # failed: as it was
    page.check("input[data-status='succeeded']")
    assert float(page.evaluate(opacity, "n_0_0")) == 1

    page.fill("#node-search", "n_17_")
    assert page.inner_text("#search-count") == f"1 of {WIDTH}"
    assert page.locator("svg.dag g.node.match").count() == WIDTH
    page.fill("#node-search", "N_12_7")
    assert page.inner_text("#search-count") == "1 of 1"
    current = page.locator("svg.dag g.node.current")
    assert current.get_attribute("data-key") == "n_12_7"
    assert centre_offset(page, "n_12_7") < 5
    assert zoom(page) >= 0.8
    shoot(page, "dashboard-search.png")
    page.click("svg.dag g.node[data-key='n_12_7']")
    page.wait_for_function("() => location.hash.includes('node=n_12_7')")
    page.fill("#node-search", "no-such-node")
    assert page.inner_text("#search-count") == "no match"
    page.fill("#node-search", "")


def check_timeline(page) -> None:
    """Every node a row; the flaky node's two attempts with the backoff between them; the
    failed node's error in its bar's title, as text."""
    page.click("button[data-tab='timeline']")
    page.wait_for_selector("svg.timeline")
    assert "view=timeline" in page.url
    assert page.get_attribute("svg.timeline", "data-rows") == "200"
    assert page.locator("#graph").is_hidden()
    # The chart fits its frame: nothing (a live run's latest bars) hides past its right edge.
    assert page.evaluate("() => { const f = document.querySelector('.tl-frame');"
                         " return f.scrollWidth <= f.clientWidth; }")
    assert page.evaluate("""() => {
        const s = document.querySelector('.tl-scroll');
        const right = s.getBoundingClientRect().left + s.clientWidth;  // left of its scrollbar
        return [...s.querySelectorAll('rect.tl-seg')]
            .every((b) => b.getBoundingClientRect().right <= right + 0.5);
    }""")
    flaky = page.locator("svg.timeline g.tl-row[data-key='n_3_4']")
    assert flaky.get_attribute("data-tries") == "2" and flaky.get_attribute("data-retries") == "1"
    assert flaky.locator("rect.tl-seg.k-backoff").count() == 1
    assert flaky.locator("rect.tl-seg.k-run.o-retry").count() == 1
    assert flaky.locator("rect.tl-seg.k-run.o-succeeded").count() == 1
    failed = page.locator("svg.timeline g.tl-row[data-key='n_12_7'] rect.tl-seg.o-failed title")
    assert XSS in failed.text_content()
    skipped = page.locator("svg.timeline g.tl-row[data-key='n_19_7']")
    assert skipped.locator("rect.tl-seg").count() == 0
    flaky.scroll_into_view_if_needed()  # the picture shows the retry
    shoot(page, "dashboard-timeline.png")
    page.click("svg.timeline g.tl-row[data-key='n_3_4'] text.tl-label")
    page.wait_for_function("() => location.hash.includes('node=n_3_4')")
    page.locator("#node-panel table.attempts tbody tr").nth(1).wait_for()
    # Back to the graph: the view is as the address says.
    page.click("button[data-tab='graph']")
    assert "view=timeline" not in page.url and page.locator("#graph-view").is_visible()


def check_run_data(page, base: str, run_id: str) -> None:
    """Inputs and outputs as JSON text; `metadata` (when the API sends it: another branch
    adds it, so here it is added to the answer) as key=value links to the runs list."""
    inputs = page.locator("#run-inputs pre.json")
    assert '"note": "<b>not bold</b>"' in inputs.inner_text()
    assert inputs.locator("b").count() == 0
    outputs = page.locator("#run-outputs")
    assert outputs.locator("pre.json").count() == 1 or outputs.inner_text().strip().endswith("none")
    # A run submitted without metadata: the API says null, the page "none".
    assert page.inner_text("#run-metadata").strip().lower().endswith("none")

    run = httpx.get(f"{base}/v1/runs/{run_id}", timeout=10).json()
    run["metadata"] = {"conversation_id": "c-42", "note": "<i>x</i>&y"}
    page.route(f"**/v1/runs/{run_id}",
               lambda route: route.fulfill(status=200, content_type="application/json",
                                           body=json.dumps(run)))
    page.reload()
    chips = page.locator("#run-metadata a.meta-chip")
    chips.first.wait_for()
    assert chips.all_inner_texts() == ["conversation_id=c-42", "note=<i>x</i>&y"]
    assert page.locator("#run-metadata i").count() == 0
    chips.nth(1).click()
    page.wait_for_function("() => location.hash.startsWith('#/runs?')")
    assert page.input_value("#meta-filter") == "note=<i>x</i>&y"
    page.unroute(f"**/v1/runs/{run_id}")


# run/timeline_model.js on made-up events: a lease that expired then a retry with backoff,
# a wait node, a map's items in their node's row, a node still running, a skipped node.
TIMELINE_MODEL = r"""async () => {
  const { timelineOf, MAX_TIMELINE_NODES } = await import('/static/run/timeline_model.js');
  const T = (s) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
  let id = 0;
  const ev = (node_key, type, s, attempt = 0, data = {}) =>
    ({ id: ++id, node_key, type, attempt, data, created_at: T(s) });
  const nodes = ['a', 'w', 'm', 'r', 'z'].map((key) => ({ key, status: 'succeeded' }));
  const events = [
    ev(null, 'run_started', 0),
    ev('a', 'node_queued', 0), ev('a', 'node_started', 1, 1),
    ev('a', 'node_lease_expired', 4, 1, { error: { type: 'LeaseExpired', message: 'gone' } }),
    ev('a', 'node_retry', 4, 1, { delay_s: 2 }),
    ev('a', 'node_started', 7, 2), ev('a', 'node_succeeded', 9, 2),
    ev('w', 'node_waiting', 2), ev('w', 'node_succeeded', 6),
    ev('m', 'node_queued', 9, 0, { items: 2 }),
    ev('m[0]', 'node_queued', 9), ev('m[1]', 'node_queued', 9),
    ev('m[0]', 'node_started', 10, 1), ev('m[1]', 'node_started', 11, 1),
    ev('m[0]', 'node_succeeded', 12, 1), ev('m[1]', 'node_failed', 13, 1,
      { error: { type: 'E', message: 'bad item\nmore' } }),
    ev('r', 'node_queued', 13), ev('r', 'node_started', 14, 1),
    ev('z', 'node_skipped', 13),
  ];
  const live = timelineOf({ created_at: T(0), finished_at: null, nodes }, events,
                          Date.parse(T(20)));
  const seg = (row) => row.segments.map((s) =>
    [s.kind, s.outcome || '', s.item || '', (s.to - s.from) / 1000, s.error || '']);
  const rows = Object.fromEntries(live.rows.map((r) => [r.key, {
    segments: seg(r), tries: r.tries, retries: r.retries, items: r.items, totals: r.totals }]));
  const big = timelineOf({ created_at: T(0), nodes: Array.from(
    { length: MAX_TIMELINE_NODES + 1 }, (_, i) => ({ key: `n${i}`, status: 'pending' })) }, []);
  // A map of 1,500 items (3,000 segments) is drawn as one bar; a small one bar by bar.
  const { renderTimeline, MAX_ROW_SEGMENTS } = await import('/static/run/timeline.js');
  const many = [ev('m', 'node_queued', 1, 0, { items: 1500 })];
  for (let i = 0; i < 1500; i += 1) {
    many.push(ev(`m[${i}]`, 'node_queued', 1), ev(`m[${i}]`, 'node_started', 2, 1),
              ev(`m[${i}]`, 'node_succeeded', 3, 1));
  }
  many.push(ev('s', 'node_started', 1, 1), ev('s', 'node_succeeded', 2, 1));
  const box = document.createElement('div');
  document.body.append(box);
  renderTimeline(box, { created_at: T(0), finished_at: T(4), nodes: [
    { key: 'm', status: 'succeeded' }, { key: 's', status: 'succeeded' }] }, many, () => {});
  const bars = (key) => box.querySelectorAll(`g.tl-row[data-key="${key}"] rect.tl-seg`).length;
  const drawn = [bars('m'), bars('s'), MAX_ROW_SEGMENTS];
  box.remove();
  return { order: live.rows.map((r) => r.key), open: live.open, span: live.end - live.start,
           rows, big: [big.tooBig, big.nodes, MAX_TIMELINE_NODES], drawn };
}"""


def check_timeline_model(page) -> None:
    got = page.evaluate(TIMELINE_MODEL)
    assert got["order"] == ["a", "w", "m", "r", "z"] and got["open"] is True
    assert got["span"] == 20_000  # from the run's creation to now
    rows = got["rows"]
    assert rows["a"]["segments"] == [
        ["queue", "", "", 1, ""], ["run", "lease_expired", "", 3, "LeaseExpired: gone"],
        ["backoff", "", "", 2, ""], ["queue", "", "", 1, ""], ["run", "succeeded", "", 2, ""]]
    assert rows["a"]["tries"] == 2 and rows["a"]["retries"] == 1
    assert rows["a"]["totals"] == {"queue": 2000, "backoff": 2000, "run": 5000, "wait": 0}
    assert rows["w"]["segments"] == [["wait", "succeeded", "", 4, ""]]
    assert rows["m"]["items"] == 2 and rows["m"]["segments"] == [
        ["queue", "", "m[0]", 1, ""], ["run", "succeeded", "m[0]", 2, ""],
        ["queue", "", "m[1]", 2, ""], ["run", "failed", "m[1]", 2, "E: bad item"]]
    assert rows["r"]["segments"] == [["queue", "", "", 1, ""], ["run", "running", "", 6, ""]]
    assert rows["z"]["segments"] == [] and rows["z"]["tries"] == 0
    assert got["big"] == [True, 1001, 1000]
    assert got["drawn"] == [1, 1, 2000]
