"""The dashboard and /docs in headless Chromium under the API's Content-Security-Policy,
with DAGQ_AUTH=on (issue 12): a tenant key sees its queues, and the workers panel says
that workers are for admin keys (GET /v1/workers is 403) and stops asking; an admin key
saved in the key box shows the workers. No page error, no CSP violation."""

from __future__ import annotations

import re

import httpx
import pytest

from dagq import service
from dagq.store import Store
from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS
from tests.harness.procs import WorkerFleet, free_port, wait_for

pytestmark = pytest.mark.e2e

# The only console errors allowed: Chromium logging the 401s of the first load (no key
# yet) and the one 403 of /v1/workers for the tenant key.
EXPECTED_CONSOLE = re.compile(r"^Failed to load resource: the server responded with a "
                              r"status of 40[13] ")


def start_api(fleet: WorkerFleet) -> str:
    port = free_port()
    fleet.start_api(port, DAGQ_AUTH="on")
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, 60, "the API to be ready")
    return base


def test_tenant_and_admin_keys_on_the_dashboard(fleet: WorkerFleet, repo: Store) -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (./scripts/test installs it as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    base = start_api(fleet)
    tenant = service.create_api_key(repo, "acme")
    admin = service.create_api_key(repo, "ops", admin=True)
    repo.fleet.register_worker(worker="w-1", hostname="gpu-host-7", pid=4242, queues=["default"],
                               threads=2, executors=[])
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("console", lambda msg: problems.append(f"console: {msg.text}")
                    if msg.type == "error" and not EXPECTED_CONSOLE.match(msg.text) else None)
            workers_asked: list[int] = []
            page.on("response", lambda r: workers_asked.append(r.status)
                    if r.url.startswith(f"{base}/v1/workers") else None)

            page.goto(f"{base}/docs")  # renders /openapi.json with its hashed inline script
            page.wait_for_function("() => document.querySelectorAll('#ops details.op')"
                                   ".length >= 15")
            assert "each event: {id, event, data}" in page.text_content("#ops")

            page.goto(f"{base}/#/runs")
            page.fill("#apikey", tenant)
            page.click("#keybox button[type=submit]")
            page.wait_for_selector("#queues-table tr[data-queue='default']")
            page.wait_for_selector("#workers-admin-only")
            assert "gpu-host-7" not in page.content()
            asked = len(workers_asked)
            with page.expect_response(lambda r: r.url.endswith("/v1/queues")):
                pass  # the next refresh of the panel asks for queues, not workers
            assert len(workers_asked) == asked and workers_asked[-1] == 403

            page.fill("#apikey", admin)
            page.click("#keybox button[type=submit]")
            page.wait_for_selector("#workers-table tr[data-worker='w-1']")
            assert "gpu-host-7:4242" in page.inner_text("#workers-table")
            assert not problems, problems
        finally:
            browser.close()
