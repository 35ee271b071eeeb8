"""Executor outputs are checked exactly as API input is (issue 12, faults 4 and 5), and
an error is always storable, whatever an exception's text holds."""

from __future__ import annotations

import math

import pytest

from dagq.api.bodies import check_storable
from dagq.errors import InvalidRequest
from dagq.jsonsafe import MAX_JSON_DEPTH
from dagq.workers.errors import OutputError
from dagq.workers.outcomes import check_outputs, describe_error
from tests.harness.outputs import nested


def check(result, *, plain: bool = False, max_bytes: int = 1_000_000):
    return check_outputs(result, plain=plain, max_bytes=max_bytes)


@pytest.mark.parametrize(("result", "problem"), [
    ({"x": "a\x00b"}, "outputs.x: text may not contain NUL"),
    ({"a\x00b": 1}, "outputs key: text may not contain NUL"),
    ({"x": "\ud800"}, "outputs.x: text contains an unpaired surrogate"),
    ({"x": ("ok", "\x00")}, "outputs.x[1]: text may not contain NUL"),
    ({"x": math.inf}, "outputs.x: number out of range"),
    ({"deep": nested(5000)}, f"JSON nested deeper than {MAX_JSON_DEPTH} levels"),
    ({"x": {1, 2}}, "not JSON"),
    ({"x": object()}, "not JSON"),
    ([1, 2], "must return a JSON object, not list"),
])
def test_unstorable_outputs_are_an_output_error_naming_the_problem(result, problem) -> None:
    with pytest.raises(OutputError) as raised:
        check(result)
    assert problem in str(raised.value)


def test_the_depth_limit_is_the_apis() -> None:
    at_limit = {"deep": nested(MAX_JSON_DEPTH - 1)}  # the object itself is one level
    assert check(at_limit) == at_limit
    check_storable(at_limit)
    too_deep = {"deep": nested(MAX_JSON_DEPTH)}
    with pytest.raises(OutputError):
        check(too_deep)
    with pytest.raises(InvalidRequest):
        check_storable(too_deep)


def test_a_cycle_is_refused_without_recursing() -> None:
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(OutputError, match="nested deeper"):
        check(loop)


def test_size_none_and_plain_results() -> None:
    assert check(None) == {}
    assert check(42, plain=True) == {"result": 42}
    with pytest.raises(OutputError, match="DAGQ_MAX_OUTPUT_BYTES"):
        check({"x": "y" * 100}, max_bytes=50)


def test_an_error_text_with_nul_or_a_surrogate_is_made_storable() -> None:
    error = describe_error(RuntimeError("bad \x00 and \ud800 here"))
    check_storable(error)  # what the fail transaction writes
    assert error["type"] == "RuntimeError"
    assert "\\x00" in error["message"] and "\\ud800" in error["message"]
