"""The dashboard says when no worker serves (issue 12), in headless Chromium: `dagq up
--workers 0` shows the "no live worker" banner and, on a run's page, which executor and
queue nobody serves; once a worker starts, both go away and the run finishes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.harness.procs import ROOT, free_port, wait_for

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _ready(base: str) -> dict | None:
    try:
        reply = httpx.get(f"{base}/readyz", timeout=2)
    except httpx.HTTPError:
        return None
    return reply.json() if reply.status_code == 200 else None


def test_dashboard_says_no_worker_serves(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (./scripts/test installs it as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    data = Path("/tmp") / f"dagq-unserved-{os.getpid()}"  # short: the socket lives inside
    shutil.rmtree(data, ignore_errors=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "DAGQ_DATABASE_URL"}
    env.update({"DAGQ_DATA_DIR": str(data), "DAGQ_AUTH": "off", "DAGQ_LOG_LEVEL": "WARNING",
                "DAGQ_HEARTBEAT_S": "1", "PYTHONPATH": str(ROOT)})
    log_path = tmp_path / "up.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    up = subprocess.Popen(
        [sys.executable, "-c", "from dagq.cli import main; raise SystemExit(main())", "up",
         "--workers", "0", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    worker = None
    try:
        ready = wait_for(lambda: _ready(base), 60, "dagq up's API")
        assert ready["workers"] == 0 and "no live worker" in ready["warnings"][0]
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                problems: list[str] = []
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
                page.goto(f"{base}/#/runs")
                page.wait_for_selector("#workers-banner:not([hidden])")
                assert "no live worker" in page.inner_text("#workers-banner")

                flow = {"name": "lonely", "nodes": {"a": {"executor": "builtin.noop"}}}
                run_id = httpx.post(f"{base}/v1/runs", json={"workflow": flow},
                                    timeout=10).json()["run_id"]
                page.evaluate("(id) => { location.hash = '#/runs/' + id; }", run_id)
                page.wait_for_selector("#run-warnings:not([hidden])")
                assert "no live worker serves executor builtin.noop on queue default" \
                    in page.inner_text("#run-warnings")

                url = re.search(r'psql "([^"]+)"', log_path.read_text()).group(1)
                worker = subprocess.Popen(
                    [sys.executable, "-m", "dagq.workers", "--threads", "2"], cwd=ROOT,
                    env={**env, "DAGQ_DATABASE_URL": url}, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
                page.wait_for_selector("#run-status .badge[data-status='succeeded']",
                                       timeout=60_000)
                page.wait_for_selector("#run-warnings", state="hidden")
                page.wait_for_selector("#workers-banner", state="hidden", timeout=30_000)
                assert not problems, problems
            finally:
                browser.close()
    finally:
        for proc in (worker, up):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT if proc is up else signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)
