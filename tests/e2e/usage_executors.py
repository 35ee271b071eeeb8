"""Executors of the cost-ledger tests (loaded via DAGQ_ACTOR_MODULES beside
sample_executors): they report model usage as an LLM executor would."""

from __future__ import annotations

import time

from dagq.workers import executor
from dagq.workers.context import current_node

# A reply as OpenAI's chat completions return it, and one as Anthropic's Messages API does.
OPENAI_REPLY = {"model": "gpt-test", "usage": {"prompt_tokens": 100, "completion_tokens": 20,
                                               "total_tokens": 120}}
ANTHROPIC_REPLY = {"model": "claude-test", "usage": {
    "input_tokens": 50, "output_tokens": 10, "cache_read_input_tokens": 5}}


@executor("test.usage", max_attempts=3)
def usage(payload):
    """Reports `params.cost_usd` for each of `params.calls` calls (model "m"), one OpenAI
    and one Anthropic reply; fails attempts up to `params.fail_until` after reporting;
    sleeps `params.seconds` in between (a worker paused there becomes a zombie)."""
    params = payload["params"]
    node = current_node()
    for _ in range(params.get("calls", 1)):
        node.usage(model="m", input_tokens=10, output_tokens=5, cost_usd=params.get("cost_usd"))
    if params.get("replies"):
        node.usage_from(OPENAI_REPLY)
        node.usage_from(ANTHROPIC_REPLY, cost_usd=0)
    deadline = time.monotonic() + params.get("seconds", 0)
    while time.monotonic() < deadline:
        time.sleep(0.05)
    if node.attempt <= params.get("fail_until", 0):
        raise RuntimeError(f"attempt {node.attempt} fails after spending")
    return {"attempt": node.attempt}
