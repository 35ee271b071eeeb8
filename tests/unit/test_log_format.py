"""DAGQ_LOG_FORMAT (issue 31 item 2): text lines as before, or one JSON object per line
with the ids a line is about; a bad value is one line and a non-zero exit."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from dramatiq.errors import Retry
from dramatiq.message import Message

from dagq.config import Settings, describe_invalid
from dagq.models import LeasedNode
from dagq.runtime.logs import JsonFormatter, TextFormatter, add_scope, formatter_for, trace_ids
from dagq.runtime.procs import EXIT_CANNOT_START
from dagq.workers import context, log_lines
from dagq.workers.context import NodeContext
from dagq.workers.errors import FatalError, NodeCancelled, WorkerShutdown
from dagq.workers.messages import LeasedMessage
from dagq.workers.outcomes import describe_error

OLD_TEXT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING dagq\.test\[\d+\]: "
                      r"disk 90% full$")


def record(msg: str = "disk %d%% full", args: tuple = (90,), **extra) -> logging.LogRecord:
    rec = logging.LogRecord("dagq.test", logging.WARNING, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


@pytest.fixture
def in_node():
    log_lines.install()  # the worker's scope: the current node
    node = NodeContext(7, uuid.uuid4(), "extract", 2, 3)
    context._set(node)
    yield node
    context._set(None)


def test_the_setting_is_text_by_default_normalised_and_checked() -> None:
    assert Settings().log_format == "text"
    assert Settings(log_format=" JSON ").log_format == "json"
    assert Settings(log_format="").log_format == "text"
    with pytest.raises(ValueError) as caught:
        Settings(log_format="xml")
    assert describe_invalid(caught.value) == (
        "DAGQ_LOG_FORMAT: Input should be 'text' or 'json' (got 'xml')")
    with pytest.raises(ValueError):
        formatter_for("xml")


def test_a_text_line_is_unchanged_outside_a_node() -> None:
    assert OLD_TEXT.match(TextFormatter().format(record()))


def test_a_text_line_about_a_node_names_it(in_node) -> None:
    line = TextFormatter().format(record())
    assert line.endswith(f"disk 90% full [run={in_node.run_id} node=extract attempt=2]")


def test_a_json_line_has_the_fields_and_parses() -> None:
    entry = json.loads(JsonFormatter().format(record()))
    assert set(entry) == {"ts", "level", "logger", "msg", "pid"}
    assert entry["level"] == "WARNING" and entry["logger"] == "dagq.test"
    assert entry["msg"] == "disk 90% full" and isinstance(entry["pid"], int)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])


def test_a_json_line_carries_the_node_the_tenant_and_the_trace(in_node) -> None:
    token = trace_ids.set(("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"))
    try:
        entry = json.loads(JsonFormatter().format(record()))
    finally:
        trace_ids.reset(token)
    assert (entry["run_id"], entry["node_key"], entry["attempt"]) == (
        str(in_node.run_id), "extract", 2)
    assert (entry["trace_id"], entry["span_id"]) == (
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    # Ids passed with `extra=` win over the scope's (a line about another node).
    other = json.loads(JsonFormatter().format(record(run_id="r2", node_key="load",
                                                     attempt=1, tenant="acme")))
    assert (other["run_id"], other["node_key"], other["attempt"], other["tenant"]) == (
        "r2", "load", 1, "acme")
    assert "trace_id" not in other  # absent, not null, when no span is current


def test_a_scope_registered_twice_counts_once() -> None:
    log_lines.install()
    log_lines.install()
    from dagq.runtime import logs

    assert logs._scopes.count(context._node.get) == 1
    add_scope(context._node.get)
    assert logs._scopes.count(context._node.get) == 1


def test_a_traceback_stays_inside_its_json_line() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        rec = logging.LogRecord("dagq.test", logging.ERROR, __file__, 1, "failed", (),
                                sys.exc_info())
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    assert "ValueError: bad" in json.loads(line)["exc"]


@pytest.mark.parametrize("command", [["-m", "dagq.workers"], ["-m", "dagq.sweeper"],
                                     ["-m", "dagq.api"]])
def test_a_process_refuses_a_bad_format_in_one_line(tmp_path, command) -> None:
    proc = subprocess.run([sys.executable, *command], cwd=tmp_path,
                          env={"DAGQ_LOG_FORMAT": "xml", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == EXIT_CANNOT_START
    assert proc.stderr.splitlines() == [
        "dagq: error: invalid configuration: DAGQ_LOG_FORMAT: Input should be 'text' or "
        "'json' (got 'xml')"]


def test_the_cli_refuses_a_bad_format_in_one_line(tmp_path) -> None:
    dagq = str(Path(sys.executable).parent / "dagq")
    proc = subprocess.run([dagq, "worker"], cwd=tmp_path,
                          env={"DAGQ_LOG_FORMAT": "xml", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1
    assert "invalid configuration: DAGQ_LOG_FORMAT" in proc.stderr


# --- a worker's lines about a failed attempt (dagq.workers.log_lines) -----------------

def leased(attempts: int = 1) -> LeasedNode:
    return LeasedNode(id=1, run_id=uuid.uuid4(), node_key="flaky", executor="e", queue="q",
                      version=1, attempts=attempts, max_attempts=3, timeout_s=5.0, params={},
                      run_inputs=None, deps={})


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001 - a traceback, as a worker has one
        return caught


@pytest.mark.parametrize(("exc", "outcome", "expected", "level", "traceback"), [
    (RuntimeError("boom"), "retry", False, "WARNING", False),
    (Retry(delay=10), "retry", False, "INFO", False),
    (WorkerShutdown(), "retry", False, "INFO", False),
    (RuntimeError("boom"), "failed", False, "ERROR", True),
    (FatalError("no"), "failed", False, "ERROR", False),
    (ValueError("thrown"), "failed", True, "ERROR", False),  # an actor's `throws`
    (NodeCancelled(), "cancelled", False, "INFO", False),
])
def test_a_failed_attempt_is_one_line_by_its_outcome(caplog, exc, outcome, expected, level,
                                                      traceback) -> None:
    node, exc = leased(), raised(exc)
    with caplog.at_level(logging.DEBUG, logger="dagq.worker"):
        log_lines.attempt_failed(node, outcome, describe_error(exc), exc, expected=expected)
    assert [r.levelname for r in caplog.records] == [level]
    line = caplog.records[0]
    assert (line.run_id, line.node_key, line.attempt) == (str(node.run_id), "flaky", 1)
    assert f"node 'flaky' of run {node.run_id}: attempt 1 of 3" in line.getMessage()
    assert bool(line.exc_info) is traceback


def test_dramatiq_s_unhandled_exception_line_is_dropped_and_others_name_the_node(
        in_node) -> None:
    log_lines.install()
    message = LeasedMessage(Message(queue_name="q", actor_name="a", args=(7, 1), kwargs={},
                                    options={}), (7, 1), 5.0, plain=False)
    thread_lines = logging.getLogger(log_lines.WORKER_THREAD_LOGGER)
    unhandled = logging.LogRecord(thread_lines.name, logging.ERROR, __file__, 1,
                                  log_lines.UNHANDLED, (message,), None)
    assert not thread_lines.filter(unhandled)
    skipped = logging.LogRecord(thread_lines.name, logging.WARNING, __file__, 1,
                                "Message %s was skipped.", (message,), None)
    assert thread_lines.filter(skipped)
    assert skipped.getMessage() == (
        f"Message node 'extract' of run {in_node.run_id} (attempt 2) was skipped.")


def test_a_server_command_s_message_is_a_log_line_with_json_logs(caplog, capsys,
                                                                  monkeypatch) -> None:
    from dagq.runtime import logs

    monkeypatch.setattr(logs, "_chosen", ["text"])
    logs.say("dagq is up in 1.0s\n  api  http://127.0.0.1:8000/")
    assert capsys.readouterr().err == "dagq is up in 1.0s\n  api  http://127.0.0.1:8000/\n"
    monkeypatch.setattr(logs, "_chosen", ["json"])
    with caplog.at_level(logging.INFO, logger="dagq"):
        logs.say("dagq is up in 1.0s\n  api  http://127.0.0.1:8000/")
    assert capsys.readouterr().err == ""
    line = JsonFormatter().format(caplog.records[-1])
    assert "\n" not in line and json.loads(line)["msg"].startswith("dagq is up")


def test_the_line_dropped_is_the_one_dramatiq_writes() -> None:
    """The filter matches Dramatiq's format string exactly: a Dramatiq that words it
    otherwise would bring its ERROR traceback back; this says so first."""
    import inspect

    from dramatiq.worker import WorkerThread

    assert repr(log_lines.UNHANDLED)[1:-1] in inspect.getsource(WorkerThread.process_message)
