"""Run an executor as a worker would, without a worker or a database: a fake node.

    with dagq.testing.node(inputs={"question": "refund?"}, key="llm") as fake:
        outputs = answer(fake.payload)          # current_node() and stream() work inside
    assert fake.text == "You asked ..."

    result = dagq.testing.run_executor(answer, inputs={"question": "refund?"})
    assert result.outcome == "succeeded" and result.outputs == {...}

The fake is the worker's own `NodeContext` (so `current_node()` is the real function),
with a recorder in the place of the stream writer: chunks are checked as the worker
checks them (a `ValueError` for what Postgres cannot store, `StreamTooLarge` past the
per-attempt cap) and kept in order. `run_executor` also takes the worker's decisions:
the outputs are checked as the worker checks them (`OutputError`), an `async def`
executor is run to completion, and an exception becomes the outcome the worker would
record: `failed` for a `FatalError` or on the last attempt, else `retry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

from dagq.config import get_settings
from dagq.models import LeasedNode
from dagq.usage import UsageRecord
from dagq.workers import context
from dagq.workers.context import NodeContext
from dagq.workers.errors import FatalError
from dagq.workers.outcomes import check_outputs, describe_error
from dagq.workers.registry import registered
from dagq.workers.streams import MAX_ATTEMPT_BYTES, StreamClosed, StreamTooLarge, chunk_size
from dagq.workers.usage import UsageMeter

if TYPE_CHECKING:
    from dagq.workers.streams import StreamWriter

DEFAULT_MAX_ATTEMPTS = 3  # a node's max_attempts when nothing sets it (docs/workflows.md)
_UNSET: Any = object()  # `item` not given: the node is not a map item


@dataclass(frozen=True)
class Chunk:
    """One `node.stream(...)` call: its text or its data (as stored: JSON round-tripped)."""

    text: str | None = None
    data: dict[str, Any] | None = None


class _Recorder:
    """Stands where the worker's StreamWriter stands: `NodeContext.stream` calls
    `append`. Thread-safe, as the real one is (an executor may stream from its threads)."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.closed = False
        self._bytes = 0
        self._lock = threading.Lock()

    def append(self, key: tuple[int, int], run_id: uuid.UUID, text: str | None = None,
               data: dict[str, Any] | None = None) -> None:
        size = chunk_size(text, data)  # the worker's own checks: a ValueError naming why
        with self._lock:
            if self.closed:
                raise StreamClosed("this attempt has ended (its executor returned): a "
                                   "thread it started streamed too late")
            if self._bytes + size > MAX_ATTEMPT_BYTES:
                raise StreamTooLarge(f"this attempt streamed more than {MAX_ATTEMPT_BYTES} bytes")
            self._bytes += size
            stored = json.loads(json.dumps(data)) if data is not None else None
            self.chunks.append(Chunk(text, stored))


@dataclass
class FakeNode:
    """The node a test runs an executor on: its payload, its context (what
    `current_node()` returns inside) and what the executor streamed."""

    payload: dict[str, Any]
    context: NodeContext
    _recorder: _Recorder = field(repr=False)

    @property
    def run_id(self) -> uuid.UUID:
        return self.context.run_id

    @property
    def key(self) -> str:
        return self.context.node_key

    @property
    def attempt(self) -> int:
        return self.context.attempt

    @property
    def chunks(self) -> list[Chunk]:
        """Every chunk streamed so far, in order."""
        with self._recorder._lock:
            return list(self._recorder.chunks)

    @property
    def text(self) -> str:
        """The streamed text so far (what `GET .../nodes/{key}/stream` answers as `text`)."""
        return "".join(chunk.text for chunk in self.chunks if chunk.text is not None)

    @property
    def usage(self) -> list[UsageRecord]:
        """Every `usage()` call so far, in order (checked as the worker checks them)."""
        return self.context.meter.recorded() if self.context.meter else []

    @property
    def data(self) -> list[dict[str, Any]]:
        """The streamed data chunks so far, in order."""
        return [chunk.data for chunk in self.chunks if chunk.data is not None]


def _mapping(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict (a JSON object), not {type(value).__name__}")
    return dict(value)


def _run_uuid(run_id: uuid.UUID | str | None) -> uuid.UUID:
    if run_id is None:
        return uuid.uuid4()
    if isinstance(run_id, uuid.UUID):
        return run_id
    try:
        return uuid.UUID(str(run_id))
    except ValueError:
        raise ValueError(f"run_id must be a UUID, not {run_id!r}") from None


def _check_node(key: str, attempt: int, max_attempts: int) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string (the node's key), not {key!r}")
    if not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"attempt counts from 1, not {attempt!r}")
    if not isinstance(max_attempts, int) or max_attempts < attempt:
        raise ValueError(f"max_attempts must be an int of at least attempt ({attempt}), "
                         f"not {max_attempts!r}")


@contextlib.contextmanager
def node(*, inputs: Mapping[str, Any] | None = None, deps: Mapping[str, Any] | None = None,
         params: Mapping[str, Any] | None = None, item: Any = _UNSET, index: int | None = None,
         run_id: uuid.UUID | str | None = None, key: str = "node", attempt: int = 1,
         max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> Iterator[FakeNode]:
    """A fake node for the block: `current_node()` inside it is this node and its
    `stream()` is recorded. `fake.payload` is what the executor is called with:
    `{"run": inputs, "deps": deps, "params": params}`, plus `item` and `index` for a map
    item. Leaving the block ends the attempt: a thread still streaming gets
    `StreamClosed`, as on a worker."""
    _check_node(key, attempt, max_attempts)
    payload: dict[str, Any] = {"run": _mapping(inputs, "inputs"), "deps": _mapping(deps, "deps"),
                               "params": _mapping(params, "params")}
    if item is not _UNSET:
        payload["item"], payload["index"] = item, 0 if index is None else index
    elif index is not None:
        raise ValueError("index is a map item's position: give item too")
    recorder = _Recorder()
    # node_id 0 and version 0: no row stands behind a fake node.
    run_uuid = _run_uuid(run_id)
    meter = UsageMeter(LeasedNode(
        id=0, run_id=run_uuid, node_key=key, executor="fake", queue="default", version=0,
        attempts=attempt, max_attempts=max_attempts, timeout_s=0, params={}, run_inputs={},
        deps={}, item_index=payload.get("index")))
    ctx = NodeContext(0, run_uuid, key, attempt, max_attempts, 0,
                      cast("StreamWriter", recorder), meter)
    # The worker sets the same context variable (workers/middleware.py); a token restores
    # whatever was there, so fakes nest and a test's own context is left as it was.
    token = context._node.set(ctx)
    try:
        yield FakeNode(payload, ctx, recorder)
    finally:
        with recorder._lock:
            recorder.closed = True
        context._node.reset(token)


Outcome = Literal["succeeded", "retry", "failed"]


@dataclass(frozen=True)
class ExecutorResult:
    """What one attempt came to, as the worker would record it."""

    outcome: Outcome
    outputs: dict[str, Any] | None  # the checked outputs (succeeded only)
    error: dict[str, Any] | None  # {type, message, traceback}, as stored on the node
    exception: BaseException | None
    chunks: list[Chunk]
    node: FakeNode

    @property
    def text(self) -> str:
        return "".join(chunk.text for chunk in self.chunks if chunk.text is not None)

    @property
    def usage(self) -> list[UsageRecord]:
        """Every `usage()` call so far, in order (checked as the worker checks them)."""
        return self.context.meter.recorded() if self.context.meter else []

    @property
    def data(self) -> list[dict[str, Any]]:
        return [chunk.data for chunk in self.chunks if chunk.data is not None]


def _resolve(fn: Callable[..., Any] | str) -> tuple[Callable[..., Any], int | None]:
    """The function and its declared max_attempts (an executor name is looked up in this
    process's registry: import the module declaring it first)."""
    if not isinstance(fn, str):
        declared = next((d for d in registered().values() if d.fn is fn), None)
        return fn, declared.max_attempts if declared else None
    definition = registered().get(fn)
    if definition is None:
        raise LookupError(f"no executor {fn!r} is declared in this process (import the module "
                          f"that declares it; declared: {sorted(registered())})")
    return definition.fn, definition.max_attempts


def run_executor(fn: Callable[..., Any] | str, inputs: Mapping[str, Any] | None = None, *,
                 max_attempts: int | None = None, **node_fields: Any) -> ExecutorResult:
    """Run one attempt of an executor (a function or a declared name) on a fake node and
    return what it came to. `node_fields` are `node()`'s (deps, params, item, index,
    run_id, key, attempt). An exception does not propagate: it is the result's
    `exception`, and `outcome` says whether the worker would retry. From inside a
    running event loop, use `arun_executor`."""
    function, declared = _resolve(fn)
    limit = max_attempts or declared or DEFAULT_MAX_ATTEMPTS
    with node(inputs=inputs, max_attempts=limit, **node_fields) as fake:
        try:
            returned = function(fake.payload)
            if inspect.isawaitable(returned):
                # The worker runs it on its event loop, in a copy of this context;
                # asyncio.run copies the context too, so current_node() is the fake.
                returned = asyncio.run(_awaited(returned))
            return _succeeded(returned, fake)
        except Exception as exc:  # noqa: BLE001 - the outcome records it, as the worker does
            return _failed(exc, fake)


async def arun_executor(fn: Callable[..., Any] | str, inputs: Mapping[str, Any] | None = None,
                        *, max_attempts: int | None = None,
                        **node_fields: Any) -> ExecutorResult:
    """`run_executor` for a test that already runs an event loop (pytest-asyncio, anyio):
    a coroutine executor is awaited on that loop."""
    function, declared = _resolve(fn)
    limit = max_attempts or declared or DEFAULT_MAX_ATTEMPTS
    with node(inputs=inputs, max_attempts=limit, **node_fields) as fake:
        try:
            returned = function(fake.payload)
            if inspect.isawaitable(returned):
                returned = await returned
            return _succeeded(returned, fake)
        except Exception as exc:  # noqa: BLE001 - the outcome records it, as the worker does
            return _failed(exc, fake)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _succeeded(returned: Any, fake: FakeNode) -> ExecutorResult:
    outputs = check_outputs(returned, plain=False, max_bytes=get_settings().max_output_bytes)
    return ExecutorResult("succeeded", outputs, None, None, fake.chunks, fake)


def _failed(exc: Exception, fake: FakeNode) -> ExecutorResult:
    # The worker's rule (workers/consumer.py, store/machine/failures.py): a FatalError
    # (OutputError included) fails at once; anything else is retried while attempts last.
    retry = not isinstance(exc, FatalError) and fake.attempt < fake.context.max_attempts
    return ExecutorResult("retry" if retry else "failed", None, describe_error(exc), exc,
                          fake.chunks, fake)


def signal_outputs(name: str, data: Mapping[str, Any] | None = None, *,
                   signal_id: str = "test") -> dict[str, Any]:
    """A wait node's outputs once signal `name` ended it: what an executor downstream of
    the wait reads in `payload["deps"][<wait node's key>]` (the store's own function)."""
    from dagq.store.machine.waits import signal_outputs as outputs

    return outputs(name, signal_id, _mapping(data, "data"))
