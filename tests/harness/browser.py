"""What the dashboard's browser tests share: Debian's Chromium (the tests skip without
it) with the flags it needs headless in a container, and `dagq up` on its own embedded
Postgres for a browser to open (tests/e2e/conftest.py makes it the `dagq_up` fixture)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.harness.procs import ROOT, free_port, wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def dagq_up(tmp_path: Path) -> Iterator[str]:
    """`dagq up --workers 1` with DAGQ_AUTH=off on a free port (its own embedded Postgres);
    yields its base URL, stops it with Ctrl-C (SIGINT) on the way out."""
    data = Path("/tmp") / f"dagq-dash-{os.getpid()}"  # short: the socket lives inside
    shutil.rmtree(data, ignore_errors=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DAGQ_DATABASE_URL"}
    env.update({"DAGQ_DATA_DIR": str(data), "DAGQ_AUTH": "off", "DAGQ_LOG_LEVEL": "WARNING",
                "DAGQ_HEARTBEAT_S": "1", "PYTHONPATH": str(ROOT), "DAGQ_TEST_EXECUTORS": "on"})
    log_path = tmp_path / "up.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    up = subprocess.Popen(
        [sys.executable, "-c", "from dagq.cli import main; raise SystemExit(main())", "up",
         "--workers", "1", "--threads", "4", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        def workers_alive() -> bool:
            try:
                reply = httpx.get(f"{base}/v1/workers", timeout=1)
            except httpx.HTTPError:
                return False
            if up.poll() is not None:
                raise AssertionError(f"dagq up exited:\n{log_path.read_text()[-3000:]}")
            return reply.status_code == 200 and any(
                w["status"] == "alive" for w in reply.json()["workers"])

        wait_for(workers_alive, 60, "dagq up's API and a live worker")
        yield base
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


def screenshot(page: Path | str, out: Path, width: int = 1280, height: int = 720) -> Path:
    """A PNG of `page` (a file or a URL) as headless Chromium renders it (the docs'
    pictures, e.g. the trace waterfall in docs/observability.md)."""
    url = page.as_uri() if isinstance(page, Path) else page
    subprocess.run([str(CHROMIUM), *CHROMIUM_ARGS, "--hide-scrollbars",
                    f"--window-size={width},{height}", f"--screenshot={out}", url],
                   check=True, capture_output=True, timeout=120)
    return out
