"""A real worker's log lines (issue 31 item 2): with DAGQ_LOG_FORMAT=json every line of
its stderr is a JSON object, and the line about a node carries its run, node and
attempt; a retried attempt is one WARNING line naming the node, the attempt and the
error, with no traceback (that is in the node's stored error) and no ERROR from
Dramatiq's worker; a node that fails for good is one ERROR line."""

from __future__ import annotations

import json

from tests.harness.procs import wait_for_run
from tests.harness.specs import spec

FLAKY = {"executor": "builtin.fail", "params": {"times": 1},
         "backoff": {"initial_s": 0.1, "max_s": 0.1}}


def run_flaky(repo, fleet, log_format: str) -> tuple[str, str]:
    """A run whose node fails once then succeeds, on a worker logging at INFO in
    `log_format`; its id and the worker's whole output once the worker stopped."""
    worker = fleet.start(threads=2, DAGQ_LOG_FORMAT=log_format, DAGQ_LOG_LEVEL="INFO")
    run_id = repo.submissions.submit_run(tenant="t", spec=spec({"flaky": FLAKY})).run_id
    run = wait_for_run(repo, run_id, timeout=60)
    assert run.status == "succeeded", fleet.logs()
    assert fleet.stop(worker) == 0
    return str(run_id), (fleet.tmp / "worker-0.log").read_text()


def test_json_lines_parse_and_a_retry_is_one_warning(repo, fleet, sql) -> None:
    run_id, output = run_flaky(repo, fleet, "json")
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert lines, "the worker wrote nothing"
    for entry in lines:
        assert {"ts", "level", "logger", "msg", "pid"} <= set(entry), entry
    warnings = [e for e in lines if e["level"] == "WARNING"]
    assert len(warnings) == 1, warnings
    retry = warnings[0]
    assert (retry["run_id"], retry["node_key"], retry["attempt"]) == (run_id, "flaky", 1)
    assert "attempt 1 of 3 failed, will retry" in retry["msg"]
    assert "RuntimeError: builtin.fail: attempt 1 fails" in retry["msg"]
    assert "exc" not in retry
    assert not [e for e in lines if e["level"] in ("ERROR", "CRITICAL")]
    assert "Traceback" not in output and "Failed to process message" not in output
    # The traceback is where the brief says it stays: in the node's stored error.
    event = sql.execute("SELECT data FROM dagq.run_events WHERE run_id = %s AND "
                        "type = 'node_retry'", (run_id,)).fetchone()
    assert "Traceback" in json.dumps(event["data"])


def test_text_lines_name_the_node_of_a_retry(repo, fleet) -> None:
    run_id, output = run_flaky(repo, fleet, "text")
    warnings = [line for line in output.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, output
    assert f"node 'flaky' of run {run_id}: attempt 1 of 3 failed, will retry: " \
        "RuntimeError: builtin.fail: attempt 1 fails" in warnings[0]
    assert warnings[0].endswith(f"[run={run_id} node=flaky attempt=1]")
    assert "Traceback" not in output and " ERROR " not in output
    assert not output.lstrip().startswith("{")


def test_a_failure_for_good_is_one_error_line_with_the_node(repo, fleet) -> None:
    worker = fleet.start(threads=2, DAGQ_LOG_FORMAT="json")
    fatal = {"executor": "builtin.fail", "params": {"fatal": True, "message": "no way"}}
    run_id = repo.submissions.submit_run(tenant="t", spec=spec({"doomed": fatal})).run_id
    assert wait_for_run(repo, run_id, timeout=60).status == "failed"
    assert fleet.stop(worker) == 0
    lines = [json.loads(line) for line in (fleet.tmp / "worker-0.log").read_text()
             .splitlines() if line.strip()]
    errors = [e for e in lines if e["level"] == "ERROR"]
    assert len(errors) == 1, lines
    assert (errors[0]["run_id"], errors[0]["node_key"]) == (str(run_id), "doomed")
    assert "failed for good: FatalError: no way" in errors[0]["msg"]
    assert "exc" not in errors[0]  # meant by the executor: no traceback


def test_a_timeout_is_told_about_the_node_it_stops(repo, fleet) -> None:
    worker = fleet.start(threads=2, DAGQ_LOG_FORMAT="json", DAGQ_LOG_LEVEL="INFO")
    slow = {"executor": "builtin.sleep", "params": {"seconds": 30}, "timeout_s": 0.5,
            "max_attempts": 1}
    run_id = str(repo.submissions.submit_run(tenant="t", spec=spec({"slow": slow})).run_id)
    assert wait_for_run(repo, run_id, timeout=60).status == "failed"
    assert fleet.stop(worker) == 0
    lines = [json.loads(line) for line in (fleet.tmp / "worker-0.log").read_text()
             .splitlines() if line.strip()]
    about = [e for e in lines if e.get("node_key") == "slow"]
    assert [(e["level"], e["run_id"], e["attempt"]) for e in about] == [
        ("INFO", run_id, 1), ("ERROR", run_id, 1)], lines
    assert "ran past its timeout" in about[0]["msg"]
    assert "failed for good: Timeout: the node ran past its timeout" in about[1]["msg"]
    assert "exc" not in about[1]  # dagq stopped it: there is no executor traceback


def test_an_executor_s_own_lines_carry_its_node(repo, fleet) -> None:
    worker = fleet.start(threads=2, DAGQ_LOG_FORMAT="json")
    node = {"executor": "test.logs", "params": {"who": "me"}}
    run_id = str(repo.submissions.submit_run(tenant="t", spec=spec({"talk": node})).run_id)
    assert wait_for_run(repo, run_id, timeout=60).status == "succeeded"
    assert fleet.stop(worker) == 0
    lines = [json.loads(line) for line in (fleet.tmp / "worker-0.log").read_text()
             .splitlines() if line.strip()]
    said = [e for e in lines if e["logger"] == "tests.executor"]
    assert [(e["msg"], e["run_id"], e["node_key"], e["attempt"]) for e in said] == [
        ("said by me", run_id, "talk", 1)]
