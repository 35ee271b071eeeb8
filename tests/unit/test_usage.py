"""usage() and usage_from() without a database: the arguments checked (ValueError, nothing
kept), OpenAI- and Anthropic-shaped replies read (objects and dicts), a call's sequence
number per attempt, and dagq.testing's fake node recording them."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest

import dagq.testing
from dagq import current_node, usage_from


def test_openai_chat_completions_and_responses_replies() -> None:
    chat = SimpleNamespace(model="gpt-4o-mini", usage=SimpleNamespace(
        prompt_tokens=812, completion_tokens=96, total_tokens=908))
    assert usage_from(chat) == {"model": "gpt-4o-mini", "input_tokens": 812,
                                "output_tokens": 96}
    responses = {"model": "gpt-4.1", "usage": {"input_tokens": 30, "output_tokens": 7,
                                               "total_tokens": 37}}
    assert usage_from(responses) == {"model": "gpt-4.1", "input_tokens": 30,
                                     "output_tokens": 7}


def test_anthropic_replies_count_cache_tokens_as_input() -> None:
    reply = {"model": "claude-sonnet-4", "usage": {
        "input_tokens": 10, "output_tokens": 50, "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 1000}}
    assert usage_from(reply) == {"model": "claude-sonnet-4", "input_tokens": 1110,
                                 "output_tokens": 50}
    assert usage_from(reply, model="alias")["model"] == "alias"


@pytest.mark.parametrize("reply", [{}, {"model": "m"}, {"usage": {"input_tokens": 1}},
                                   SimpleNamespace(usage=None, model="m")])
def test_a_reply_without_usage_or_model_is_refused(reply: Any) -> None:
    with pytest.raises(ValueError, match="usage_from"):
        usage_from(reply)


@pytest.mark.parametrize("kwargs", [
    {"model": "", "input_tokens": 1, "output_tokens": 1},
    {"model": 3, "input_tokens": 1, "output_tokens": 1},
    {"model": "m", "input_tokens": -1, "output_tokens": 1},
    {"model": "m", "input_tokens": 1.5, "output_tokens": 1},
    {"model": "m", "input_tokens": True, "output_tokens": 1},
    {"model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": -0.1},
    {"model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": math.nan},
    {"model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": "1"},
    {"model": "m", "input_tokens": 1, "output_tokens": 1, "note": object()},
    {"model": "m", "input_tokens": 1, "output_tokens": 1, "note": "x" * 5000},
    {"model": "m", "input_tokens": 1, "output_tokens": 1, "note": "a\x00b"},
])
def test_bad_usage_arguments_raise_and_record_nothing(kwargs: dict[str, Any]) -> None:
    with dagq.testing.node() as fake:
        with pytest.raises(ValueError, match="usage"):
            current_node().usage(**kwargs)
        assert fake.usage == []


def test_calls_are_numbered_per_attempt_with_their_extra() -> None:
    with dagq.testing.node(key="llm", attempt=2) as fake:
        node = current_node()
        node.usage(model="m", input_tokens=3, output_tokens=4, cost_usd=0.5, request_id="r1")
        node.usage_from({"model": "gpt", "usage": {"prompt_tokens": 1, "completion_tokens": 2}})
    assert [(u.seq, u.model, u.attempt, u.node_key, u.cost_usd, u.extra) for u in fake.usage] == [
        (1, "m", 2, "llm", 0.5, {"request_id": "r1"}), (2, "gpt", 2, "llm", None, None)]


def test_usage_outside_an_executor_says_why() -> None:
    with pytest.raises(RuntimeError, match="not inside a dagq executor"):
        current_node().usage(model="m", input_tokens=1, output_tokens=1)
