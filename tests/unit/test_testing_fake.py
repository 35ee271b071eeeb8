"""dagq.testing's fake node: an executor run as a worker runs it (payload, current_node(),
stream(), async, the worker's outcome rules), without a worker or a database."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

from dagq import FatalError, current_node, executor
from dagq.testing import node, run_executor, signal_outputs
from dagq.testing.fake import arun_executor
from dagq.workers.errors import OutputError
from dagq.workers.streams import StreamClosed

RUN = uuid.UUID("6b1d2a4e-0000-4000-8000-000000000001")


def streaming(payload):
    node_ = current_node()
    for word in payload["run"]["text"].split():
        node_.stream(word + " ")
    node_.stream(data={"words": len(payload["run"]["text"].split())})
    return {"key": node_.node_key, "attempt": node_.attempt, "run": str(node_.run_id)}


async def async_streaming(payload):
    await asyncio.sleep(0)
    current_node().stream("async ")
    await asyncio.sleep(0)
    return {"key": current_node().node_key, "deps": payload["deps"]}


def test_calling_a_streaming_executor_bare_is_the_error_this_module_answers() -> None:
    with pytest.raises(RuntimeError, match="not inside a dagq executor"):
        streaming({"run": {"text": "a b"}})


def test_the_fake_node_is_current_node_and_records_what_is_streamed() -> None:
    with node(inputs={"text": "one two three"}, key="llm", attempt=2, max_attempts=5,
              run_id=RUN) as fake:
        outputs = streaming(fake.payload)
        inside = current_node()
    assert (inside.run_id, inside.node_key, inside.attempt, inside.max_attempts) == \
        (RUN, "llm", 2, 5)
    assert outputs == {"key": "llm", "attempt": 2, "run": str(RUN)}
    assert fake.text == "one two three "
    assert fake.data == [{"words": 3}]
    assert [c.text for c in fake.chunks] == ["one ", "two ", "three ", None]
    assert fake.payload == {"run": {"text": "one two three"}, "deps": {}, "params": {}}
    with pytest.raises(RuntimeError, match="not inside"):  # the block ended: no node
        current_node()


def test_run_executor_succeeds_with_checked_outputs_and_chunks() -> None:
    result = run_executor(streaming, {"text": "a b"}, key="s", run_id=str(RUN))
    assert result.outcome == "succeeded" and result.error is None
    assert result.outputs == {"key": "s", "attempt": 1, "run": str(RUN)}
    assert result.text == "a b " and result.data == [{"words": 2}]


def test_an_async_executor_runs_to_completion_with_its_node() -> None:
    result = run_executor(async_streaming, deps={"retrieve": {"docs": [1]}}, key="a")
    assert result.outcome == "succeeded", result.error
    assert result.outputs == {"key": "a", "deps": {"retrieve": {"docs": [1]}}}
    assert result.text == "async "

    async def inside_a_loop():  # a test that already runs a loop: arun_executor
        return await arun_executor(async_streaming, key="b")

    assert asyncio.run(inside_a_loop()).outputs == {"key": "b", "deps": {}}


def test_fatal_error_fails_at_once_and_other_errors_retry_until_the_last_attempt() -> None:
    def fatal(payload):
        current_node().stream("before ")
        raise FatalError("empty question")

    def flaky(payload):
        raise ConnectionError("model unavailable")

    result = run_executor(fatal, attempt=1, max_attempts=5)
    assert result.outcome == "failed" and isinstance(result.exception, FatalError)
    assert result.error["type"] == "FatalError" and result.error["message"] == "empty question"
    assert result.text == "before "  # chunks streamed before the error are kept
    assert run_executor(flaky, attempt=1, max_attempts=3).outcome == "retry"
    last = run_executor(flaky, attempt=3, max_attempts=3)
    assert last.outcome == "failed" and last.error["type"] == "ConnectionError"


def test_outputs_are_checked_as_the_worker_checks_them() -> None:
    result = run_executor(lambda payload: ["not", "an", "object"])
    assert result.outcome == "failed" and isinstance(result.exception, OutputError)
    assert "JSON object" in result.error["message"]
    assert run_executor(lambda payload: None).outputs == {}  # None is {} as on a worker
    assert run_executor(lambda payload: {"x": float("nan")}).outcome == "failed"


def test_bad_chunks_raise_as_on_a_worker_and_a_late_thread_gets_stream_closed() -> None:
    with node() as fake:
        with pytest.raises(ValueError, match="stream text must be a str"):
            current_node().stream(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="needs text or data"):
            current_node().stream()
        ctx = current_node()
    assert fake.chunks == []
    errors: list[BaseException] = []

    def late() -> None:
        try:
            ctx.stream("too late")
        except StreamClosed as exc:
            errors.append(exc)

    thread = threading.Thread(target=late)
    thread.start()
    thread.join()
    assert len(errors) == 1 and fake.chunks == []


def test_threads_the_executor_starts_stream_into_the_same_node() -> None:
    def fan_out(payload):
        node_ = current_node()
        threads = [threading.Thread(target=node_.stream, args=(f"{i} ",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return {}

    result = run_executor(fan_out)
    assert sorted(result.text.split()) == ["0", "1", "2", "3"]


def test_fakes_nest_and_restore_the_outer_node() -> None:
    with node(key="outer"):
        with node(key="inner"):
            assert current_node().node_key == "inner"
        assert current_node().node_key == "outer"


def test_map_items_and_signals_reach_the_payload_as_on_a_worker() -> None:
    approval = signal_outputs("approval", {"approved": True})
    assert approval == {"signal": "approval", "signal_id": "test", "data": {"approved": True}}
    with node(item={"id": "d1"}, index=3, deps={"approve": approval}, params={"p": 1}) as fake:
        assert fake.payload == {"run": {}, "deps": {"approve": approval}, "params": {"p": 1},
                                "item": {"id": "d1"}, "index": 3}


@pytest.mark.parametrize(("fields", "error", "match"), [
    ({"inputs": ["a"]}, TypeError, "inputs must be a dict"),
    ({"deps": "x"}, TypeError, "deps must be a dict"),
    ({"attempt": 0}, ValueError, "attempt counts from 1"),
    ({"attempt": 3, "max_attempts": 2}, ValueError, "max_attempts must be"),
    ({"key": ""}, ValueError, "key must be a non-empty string"),
    ({"run_id": "nope"}, ValueError, "run_id must be a UUID"),
    ({"index": 2}, ValueError, "give item too"),
])
def test_bad_node_fields_are_refused_with_the_field_named(fields, error, match) -> None:
    with pytest.raises(error, match=match), node(**fields):
        pass


def test_run_executor_by_name_takes_the_declared_max_attempts() -> None:
    @executor("testing.fake.flaky", max_attempts=1)
    def flaky(payload):
        raise RuntimeError("down")

    assert run_executor("testing.fake.flaky").outcome == "failed"  # its only attempt
    assert run_executor(flaky).outcome == "failed"
    assert run_executor(flaky, max_attempts=2).outcome == "retry"
    with pytest.raises(LookupError, match="no executor 'testing.nope'"):
        run_executor("testing.nope")
