"""Resuming only what failed and bulk actions from the dashboard (issue 34, items 2-3), in
a real browser on the API in process (no workers: the test runs the nodes through the
store): a failed node is resolved through its panel's form (text that is not JSON is
refused in the page, the API's 4xx message is shown as it says it, then the run goes on
and succeeds); a map with one failed item is resumed with "Retry failed items", which
says how many items it keeps and runs only the failed one; on the runs list, a metadata
filter offers "Cancel all…" / "Retry all…", which count, ask, act on exactly the runs
the filter finds (following the API's cursor) and say the totals."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS
from tests.harness.drive import drive
from tests.harness.live_api import LiveApi
from tests.harness.specs import spec

pytestmark = pytest.mark.e2e

WAIT_MS = 15_000


@pytest.fixture
def live(db_url: str) -> Iterator[LiveApi]:
    with LiveApi(db_url, auth="off") as api:
        yield api


@pytest.fixture
def browser_page(live: LiveApi) -> Iterator[tuple[Any, list[str]]]:
    """A Chromium page (1440 x 900) and the page errors it reported."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            yield page, problems
        finally:
            browser.close()


def fails(key: str) -> Any:
    def executor(payload: dict[str, Any]) -> Any:
        raise RuntimeError(f"{key} broke")
    return executor


def statuses(live: LiveApi, run_id: Any) -> dict[str, str]:
    return {n.key: n.status for n in live.repo.runs.get_run(run_id).nodes}


def test_resolve_a_failed_node_through_its_panel(live: LiveApi, browser_page) -> None:
    page, problems = browser_page
    # fail_fast off and `d` on a queue the test drives later: the run is still running
    # while the form is used, so the panel is redrawn under the typing.
    wf = spec({"a": {"executor": "builtin.echo"},
               "b": {"executor": "builtin.echo", "depends_on": ["a"], "max_attempts": 1},
               "c": {"executor": "builtin.merge", "depends_on": ["b"]},
               "d": {"executor": "builtin.echo", "queue": "other"}},
              name="chain", fail_fast=False)
    run_id = live.repo.submissions.submit_run(tenant="default", spec=wf).run_id
    drive(live.repo, {"b": fails("b")})
    assert statuses(live, run_id) == {"a": "succeeded", "b": "failed", "c": "skipped",
                                      "d": "queued"}

    page.goto(f"{live.url}/#/runs/{run_id}?node=b")
    page.wait_for_selector("#run-status .badge[data-status='running']", timeout=WAIT_MS)
    page.click("#node-panel details.resolve summary")
    outputs = "#node-panel textarea.resolve-outputs"
    submit = "#node-panel .resolve-form button[type=submit]"
    assert page.input_value(outputs) == "{}"
    # Not JSON: said in the page, nothing sent.
    page.fill(outputs, '{"answer": oops}')
    page.click(submit)
    page.wait_for_selector("#node-panel .resolve-note.error-text", timeout=WAIT_MS)
    assert page.inner_text("#node-panel .resolve-note").startswith("Not JSON:")
    # JSON of the wrong shape: the API's own 422 message, as it says it.
    refused = httpx.post(f"{live.url}/v1/runs/{run_id}/nodes/b/resolve",
                         json={"outputs": [1, 2]}, timeout=10)
    assert refused.status_code == 422
    page.fill(outputs, "[1, 2]")
    page.click(submit)
    page.wait_for_function(
        "(m) => document.querySelector('#node-panel .resolve-note').textContent === m",
        arg=refused.json()["error"]["message"], timeout=WAIT_MS)
    assert statuses(live, run_id)["b"] == "failed"  # neither wrote anything

    # Typing goes on across a redraw: `d` ends (the run finishes meanwhile).
    page.fill(outputs, "")
    page.keyboard.type('{"answer": ')
    assert drive(live.repo, queue="other") == ["d"]
    ended = live.repo.runs.get_run(run_id).status
    assert ended in ("failed", "partial_succeeded")
    page.wait_for_selector(f"#run-status .badge[data-status='{ended}']", timeout=WAIT_MS)
    page.keyboard.type('"by hand"}')
    assert page.input_value(outputs) == '{"answer": "by hand"}'
    page.click(submit)
    page.wait_for_selector("#run-status .badge[data-status='running']", timeout=WAIT_MS)
    assert statuses(live, run_id) == {"a": "succeeded", "b": "succeeded", "c": "queued",
                                      "d": "succeeded"}
    assert drive(live.repo) == ["c"]  # the run goes on from the resolved node
    page.wait_for_selector("#run-status .badge[data-status='succeeded']", timeout=WAIT_MS)
    page.wait_for_selector("#node-panel .resolved-note", timeout=WAIT_MS)
    assert "it had failed" in page.inner_text("#node-panel .resolved-note")
    assert page.query_selector("#node-panel details.resolve") is None  # succeeded now
    page.wait_for_selector(".events-table tr.ev-node_resolved", timeout=WAIT_MS)
    assert "resolved by" in page.inner_text(".events-table tr.ev-node_resolved td.details")
    nodes = {n.key: n for n in live.repo.runs.get_run(run_id).nodes}
    assert nodes["b"].outputs == {"answer": "by hand"}
    assert not problems, problems


def test_retry_only_the_failed_items_of_a_map(live: LiveApi, browser_page) -> None:
    page, problems = browser_page
    wf = spec({
        "src": {"executor": "builtin.echo"},
        "each": {"executor": "builtin.echo", "depends_on": ["src"], "max_attempts": 1,
                 "map": {"dep": "src", "path": "items"}},
        "after": {"executor": "builtin.merge", "depends_on": ["each"]},
    }, name="mapped", fail_fast=False)
    run_id = live.repo.submissions.submit_run(tenant="default", spec=wf).run_id
    drive(live.repo, {"src": lambda p: {"items": list(range(10))}, "each[4]": fails("item 4")})
    run = live.repo.runs.get_run(run_id)
    assert run.status in ("failed", "partial_succeeded")
    each = next(n for n in run.nodes if n.key == "each")
    assert (each.status, each.items, each.items_succeeded) == ("failed", 10, 9)

    page.goto(f"{live.url}/#/runs/{run_id}")
    page.wait_for_selector(".actions button.retry-items", timeout=WAIT_MS)
    assert page.inner_text(".actions .retry-kept") == "keeps 9 of 10 items"
    page.click(".actions button.retry-items")
    page.wait_for_selector("#run-status .badge[data-status='running']", timeout=WAIT_MS)
    assert page.query_selector(".actions button.retry-items") is None  # an open run
    assert drive(live.repo) == ["each[4]", "after"]  # only the failed item ran again
    page.wait_for_selector("#run-status .badge[data-status='succeeded']", timeout=WAIT_MS)
    assert not problems, problems


def submit(live: LiveApi, batch: str) -> str:
    body = {"workflow": {"name": "tagged", "nodes": {"a": {"executor": "builtin.echo"}}},
            "metadata": {"batch": batch}}
    reply = httpx.post(f"{live.url}/v1/runs", json=body, timeout=10)
    assert reply.status_code == 201, reply.text
    return reply.json()["run_id"]


def test_bulk_cancel_and_retry_on_the_filtered_runs_list(live: LiveApi, browser_page) -> None:
    page, problems = browser_page
    mine = [submit(live, "b1") for _ in range(3)]
    other = submit(live, "b2")
    asked: list[str] = []

    def answer(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    page.goto(f"{live.url}/#/runs")
    page.wait_for_selector(f"#runs-table tr[data-run-id='{other}']", timeout=WAIT_MS)
    assert page.is_hidden("#bulk-bar")  # no filter: no bulk action on every run
    page.goto(f"{live.url}/#/runs?meta.batch=b1")
    page.wait_for_selector("#bulk-bar button.bulk-cancel", state="visible", timeout=WAIT_MS)

    page.click("#bulk-bar button.bulk-retry")  # all queued: nothing to retry, nothing asked
    page.wait_for_selector("#bulk-note:has-text('No failed')", timeout=WAIT_MS)
    assert asked == []
    page.click("#bulk-bar button.bulk-cancel")
    page.wait_for_selector("#bulk-note:has-text('Cancelled 3 runs.')", timeout=WAIT_MS)
    assert asked[-1].startswith("Cancel 3 runs? (the queued or running ones these filters find.)")
    assert {str(r): live.repo.runs.get_run(r).status for r in [*mine, other]} == {
        **{r: "cancelled" for r in mine}, other: "queued"}
    page.click("#bulk-bar button.bulk-retry")
    page.wait_for_selector("#bulk-note:has-text('Retried 3 runs.')", timeout=WAIT_MS)
    assert asked[-1].startswith("Retry 3 runs?")
    assert {live.repo.runs.get_run(r).status for r in mine} == {"running"}  # requeued

    # The loop over next_cursor: 5 runs, 2 a call.
    for _ in range(5):
        submit(live, "b3")
    totals = page.evaluate("""async () => {
      const bulk = await import("/static/bulk_actions.js");
      const steps = [];
      const totals = await bulk.actOnAll("cancel", {meta: {batch: "b3"}},
        new AbortController().signal, (t) => steps.push(t.acted), 2);
      return {totals, steps};
    }""")
    assert totals == {"totals": {"acted": 5, "skipped": 0, "skipped_by": {}}, "steps": [2, 4, 5]}

    # A status filter the action cannot apply to hides it; a metadata filter the API
    # refuses hides both (acting without it would reach more runs than the list shows).
    page.goto(f"{live.url}/#/runs?status=succeeded&meta.batch=b1")
    page.wait_for_selector("#runs-table", timeout=WAIT_MS)
    page.wait_for_function("() => document.querySelector('#bulk-bar').hidden")
    page.goto(f"{live.url}/#/runs?meta.b%20ad=1")
    page.wait_for_selector("#meta-note.error-text", timeout=WAIT_MS)
    assert page.is_hidden("#bulk-bar")
    assert not problems, problems
