"""The node an executor thread is running: `current_node()` inside an executor.

    node = current_node()
    node.stream("a token ")                 # partial output, delivered live, stored
    node.stream(data={"done": 3, "total": 10})
    node.usage(model="gpt-4o-mini", input_tokens=812, output_tokens=96)   # the cost ledger
    node.usage_from(reply)                  # the same, read from an OpenAI/Anthropic reply

The context is a context variable, set on the worker thread that runs the attempt: an
`async def` executor sees it too (its coroutine runs on the process's event loop, in a
copy of that thread's context). An executor that starts threads passes `node` to them
(its `stream` works from any thread while the attempt runs).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from dagq.usage import UsageRecord, usage_from

if TYPE_CHECKING:
    from dagq.workers.streams import StreamWriter
    from dagq.workers.usage import UsageMeter


@dataclass(frozen=True)
class NodeContext:
    node_id: int
    run_id: UUID
    node_key: str
    attempt: int
    max_attempts: int
    version: int = 0  # the lease's fence: streamed chunks carry it
    writer: StreamWriter | None = field(default=None, repr=False, compare=False)
    meter: UsageMeter | None = field(default=None, repr=False, compare=False)
    # The W3C traceparent of this attempt's span (tracing on: dagq.workers.tracing), to
    # pass to a service the executor calls; None when tracing is off.
    trace_context: str | None = None

    def stream(self, text: str | None = None, *, data: dict[str, Any] | None = None) -> None:
        """Append to this attempt's streamed output: `text`, or `data` (a JSON object).
        Cheap: buffered, and written in batches within ~15 ms. Chunks sent after the
        attempt lost its lease are dropped (a newer attempt streams on its own)."""
        if self.writer is None:
            raise RuntimeError("streaming needs a dagq worker (this context has none)")
        self.writer.append((self.node_id, self.version), self.run_id, text, data)

    def usage(self, *, model: str, input_tokens: int, output_tokens: int,
              cost_usd: float | None = None, **extra: Any) -> UsageRecord:
        """Record one model call's usage for this attempt (call it once per call, as
        often as needed). `cost_usd` None: priced from the tenant's price table (`dagq
        tenants set NAME --prices`); `extra`: small JSON kept with the row. Buffered and
        written with the attempt's outcome, in the same transaction; ValueError on bad
        arguments (nothing recorded)."""
        if self.meter is None:
            raise RuntimeError("usage() needs a dagq worker (this context has none)")
        return self.meter.add(model, input_tokens, output_tokens, cost_usd, extra)

    def usage_from(self, response: Any, *, model: str | None = None,
                   cost_usd: float | None = None) -> UsageRecord:
        """usage() with the model and tokens of an OpenAI- or Anthropic-shaped reply
        (dagq.usage_from)."""
        return self.usage(**usage_from(response, model=model), cost_usd=cost_usd)


_node: ContextVar[NodeContext | None] = ContextVar("dagq_node", default=None)


def current() -> NodeContext:
    """The node being executed in this context (only valid inside an executor)."""
    ctx = _node.get()
    if ctx is None:
        raise RuntimeError("not inside a dagq executor")
    return ctx


def _set(ctx: NodeContext | None) -> None:
    _node.set(ctx)


def current_node() -> NodeContext:
    """The public name (`from dagq import current_node`): the node this executor runs."""
    return current()
