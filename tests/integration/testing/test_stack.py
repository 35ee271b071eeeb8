"""dagq.testing.Stack on a real database: the examples' executors served by a real worker
process, a run submitted and seen succeed (locally and through the API), and a stack that
cannot start says why and leaves no process behind."""

from __future__ import annotations

import json
import os

import pytest

from dagq.testing import Stack, StackError
from tests.harness.procs import ROOT

CHAT = json.loads((ROOT / "examples" / "chat.json").read_text())


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def test_a_run_of_the_chat_example_succeeds_on_the_stack(db_url: str) -> None:
    stack = Stack(["examples.chat_executors"], api=True, database_url=db_url, cwd=ROOT,
                  start_timeout_s=90)
    with stack:
        pids = [child.proc.pid for child in stack._children]
        with pytest.raises(StackError, match="already started"):
            stack.start()
        assert stack.register_workflow(CHAT) == 1
        run = stack.submit_and_wait("chat", {"question": "I was charged twice"}, timeout_s=60)
        assert run.status == "succeeded", stack.logs()
        assert run.outputs["answer"]["answer"].startswith("You asked: I was charged twice")
        with stack.client() as client:  # the API answers about the same run
            assert client.run(run.run_id).status == "succeeded"
            text = "".join(client.stream_text(run.run_id, "llm"))
            assert text.strip() == run.outputs["answer"]["answer"]
        failed = stack.submit_and_wait("chat", {"question": ""})  # chat.retrieve: FatalError
        assert failed.status == "failed"
    assert not [pid for pid in pids if _alive(pid)]
    assert stack._tmp is None and stack._repo is None


def test_a_module_that_does_not_import_stops_the_start_with_its_reason(db_url: str) -> None:
    stack = Stack("examples.no_such_module", database_url=db_url, cwd=ROOT)
    with pytest.raises(StackError, match="worker-1 cannot start: .*no_such_module"):
        stack.start()
    assert stack._children == []  # stopped what it had started


def test_bad_arguments_are_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="actor_modules: name at least one module"):
        Stack([])
    with pytest.raises(ValueError, match="at least 1"):
        Stack("m", workers=0)
    with pytest.raises(StackError, match="no API"):
        Stack("m").client()
    assert "DAGQ_STATUS_FD" not in os.environ
