"""`dagq up` with DAGQ_LOG_FORMAT=json (issue 31 item 2): everything on its stderr, its
own banner and every child's lines (API, sweeper, worker), is one JSON object per line,
so a log collector can read the whole stream."""

from __future__ import annotations

import json

import httpx

from tests.harness.procs import free_port, wait_for, wait_for_run
from tests.harness.specs import spec


def test_dagq_up_writes_only_json_lines(repo, fleet) -> None:
    port = free_port()
    up = fleet.start_command("up", "--workers", "1", "--threads", "2", "--api-processes", "1",
                             "--port", str(port), DAGQ_LOG_FORMAT="json",
                             DAGQ_LOG_LEVEL="INFO", DAGQ_AUTH="off")
    log = fleet.tmp / "worker-cmd-0.log"
    wait_for(lambda: "dagq is up" in log.read_text(), 60, "the banner")
    # The banner waits for the workers, not for the API's socket: poll it.
    wait_for(lambda: healthy(port), 30, "the API")
    flaky = {"executor": "builtin.fail", "params": {"times": 1},
             "backoff": {"initial_s": 0.1, "max_s": 0.1}}
    run_id = repo.submissions.submit_run(tenant="t", spec=spec({"flaky": flaky})).run_id
    assert wait_for_run(repo, run_id, timeout=60).status == "succeeded"
    assert fleet.stop(up, timeout=60) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    loggers = {entry["logger"] for entry in lines}
    assert {"dagq", "dagq.api", "dagq.worker"} <= loggers, loggers
    assert len({entry["pid"] for entry in lines}) >= 3  # up, the API, the worker
    banner = next(e for e in lines if e["msg"].startswith("dagq is up"))
    assert "Ctrl-C" in banner["msg"]
    retry = [e for e in lines if e["level"] == "WARNING" and e.get("node_key") == "flaky"]
    assert len(retry) == 1 and retry[0]["run_id"] == str(run_id)


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False
