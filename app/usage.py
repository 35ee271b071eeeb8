"""Model usage (the cost ledger): what one `current_node().usage(...)` call records, how
usage is read from a model client's response, and how a run's usage is shown.

    node = current_node()
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=...)
    node.usage(**usage_from(reply))          # or node.usage(model=..., input_tokens=...)

`usage_from` reads the `usage` of an OpenAI-shaped response (chat completions:
prompt_tokens / completion_tokens; the Responses API: input_tokens / output_tokens) or an
Anthropic-shaped one (input_tokens / output_tokens, plus cache_creation_input_tokens and
cache_read_input_tokens, which Anthropic bills as input), as an object or a dict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_MODEL_CHARS = 200
MAX_TOKENS = 10**12  # far beyond any one call: a larger number is a bug, not a bill
MAX_EXTRA_BYTES = 4096


@dataclass(frozen=True)
class UsageRecord:
    """One usage() call of one attempt, as the worker buffers it until the attempt's
    outcome is written (the same transaction): (node_id, version) is the lease, `seq`
    the call's number within the attempt (1, 2, ...)."""

    node_id: int
    version: int
    seq: int
    run_id: Any
    node_key: str
    attempt: int
    executor: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None = None
    item_index: int | None = None
    extra: dict[str, Any] | None = None

    def row(self) -> dict[str, Any]:
        """The JSON object dagq.record_usage takes."""
        return {"node_id": self.node_id, "version": self.version, "seq": self.seq,
                "run_id": str(self.run_id), "node_key": self.node_key,
                "item_index": self.item_index, "attempt": self.attempt,
                "executor": self.executor, "model": self.model,
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cost_usd": self.cost_usd, "extra": self.extra}


def check_usage(model: Any, input_tokens: Any, output_tokens: Any,
                cost_usd: Any) -> tuple[str, int, int, float | None]:
    """The arguments of usage(), checked (ValueError naming the problem): a model name,
    token counts that are non-negative integers, a cost that is a finite number >= 0."""
    if not isinstance(model, str) or not 1 <= len(model) <= MAX_MODEL_CHARS:
        raise ValueError(f"usage(): model must be a string of 1 to {MAX_MODEL_CHARS} "
                         f"characters, not {model!r:.80}")
    counts = []
    for name, value in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
            raise ValueError(f"usage(): {name} must be an integer from 0 to {MAX_TOKENS}, "
                             f"not {value!r:.80}")
        counts.append(value)
    if cost_usd is not None:
        if (isinstance(cost_usd, bool) or not isinstance(cost_usd, int | float)
                or not math.isfinite(cost_usd) or cost_usd < 0):
            raise ValueError(f"usage(): cost_usd must be a finite number >= 0 or None, "
                             f"not {cost_usd!r:.80}")
        cost_usd = float(cost_usd)
    return model, counts[0], counts[1], cost_usd


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def usage_from(response: Any, *, model: str | None = None) -> dict[str, Any]:
    """usage()'s keyword arguments from an OpenAI- or Anthropic-shaped response (an SDK
    object or its dict): model, input_tokens, output_tokens. `model` overrides the
    response's. ValueError when the response has no `usage` or no model."""
    usage = _get(response, "usage")
    if usage is None:
        raise ValueError("usage_from(): the response has no 'usage' field")
    name = model or _get(response, "model")
    if not isinstance(name, str) or not name:
        raise ValueError("usage_from(): the response names no model (pass model=...)")
    if _get(usage, "prompt_tokens") is not None:  # OpenAI chat completions
        inputs = _get(usage, "prompt_tokens") or 0
        outputs = _get(usage, "completion_tokens") or 0
    else:  # OpenAI Responses API, Anthropic Messages
        inputs = ((_get(usage, "input_tokens") or 0)
                  + (_get(usage, "cache_creation_input_tokens") or 0)
                  + (_get(usage, "cache_read_input_tokens") or 0))
        outputs = _get(usage, "output_tokens") or 0
    return {"model": name, "input_tokens": int(inputs), "output_tokens": int(outputs)}


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class Spend(_View):
    """Tokens and cost."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = Field(0.0, description="priced cost (calls with no price count 0)")


class AttemptUsage(_View):
    """One model's usage in one attempt of one node (or map item)."""

    node_key: str
    item_index: int | None = None
    attempt: int
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None = Field(description="None: no call of it was priced")
    fenced: bool = Field(description="written by an attempt that had lost its lease (a "
                                     "zombie): charged, but its outcome was discarded")


class RunUsage(_View):
    """A run's model usage: per node attempt, the run's own total, and the total with
    its child runs (sub-workflows, recursively)."""

    attempts: list[AttemptUsage]
    own: Spend = Field(description="this run's nodes, every attempt, zombies included")
    fenced: Spend = Field(description="the part of `own` spent by zombie attempts")
    total: Spend = Field(description="`own` plus every descendant run's")
    saved: Spend | None = Field(
        None, description="a rerun: what the nodes it copied from its original spent "
                          "there, and did not spend again")
