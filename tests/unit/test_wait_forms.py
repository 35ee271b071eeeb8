"""A wait's form (dagq.spec.forms): what a workflow may declare (422 naming the node and
the problem at registration) and how data is checked against it (the field named)."""

from __future__ import annotations

from typing import Any

import pytest

from dagq.errors import InvalidWorkflow
from dagq.spec.forms import FormError, check_form, validate_data
from dagq.spec.workflow import parse_spec

FORM: dict[str, Any] = {
    "type": "object",
    "title": "Approve the refund",
    "properties": {
        "approved": {"type": "boolean", "description": "yes or no"},
        "amount": {"type": "number", "minimum": 0, "maximum": 1000},
        "count": {"type": "integer", "default": 1},
        "reason": {"type": "string", "maxLength": 20},
        "tier": {"enum": ["gold", "silver"]},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]},
                 "maxItems": 2},
    },
    "required": ["approved"],
}


def spec_with(wait: dict[str, Any]) -> dict[str, Any]:
    return {"name": "w", "nodes": {"approve": {"wait": wait}}}


def test_a_form_and_assignees_register_on_a_signal_wait() -> None:
    spec = parse_spec(spec_with({"signal": "ok", "form": FORM, "assignees": ["ann"],
                                 "respond_ttl_s": 60}))
    wait = spec.nodes["approve"].wait
    assert wait is not None and wait.form == FORM and wait.assignees == ["ann"]


@pytest.mark.parametrize(("form", "problem"), [
    ({"type": "object", "properties": {"x": {"type": "date"}}}, "type 'date' is not supported"),
    ({"properties": {"x": {"type": "string", "pattern": "a+"}}},
     "unsupported keyword(s) 'pattern'"),
    ({"properties": {"x": {"type": "array", "items": {"type": "array"}}}}, "not supported"),
    ({"properties": {"x": {"type": "array"}}}, "an array needs 'items'"),
    ({"properties": {"x": {"type": "integer", "default": "one"}}}, "expected an integer"),
    ({"properties": {}, "required": ["x"]}, "'required' names 'x'"),
    ({"type": "string"}, "a form's type is 'object'"),
    ({"properties": {"x": {"enum": []}}}, "'enum' is a list of 1 to"),
    ({"properties": {"x": {}}}, "needs a 'type'"),
])
def test_a_bad_form_is_a_422_naming_the_node_and_the_problem(
        form: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidWorkflow) as err:
        parse_spec(spec_with({"signal": "ok", "form": form}))
    assert "nodes.approve.wait.form" in err.value.message and problem in err.value.message


def test_form_assignees_and_ttl_need_a_signal_wait() -> None:
    with pytest.raises(InvalidWorkflow, match="apply to a signal wait only"):
        parse_spec(spec_with({"seconds": 5, "form": FORM}))


def test_valid_data_is_returned_with_the_defaults_filled_in() -> None:
    data = {"approved": True, "amount": 12.5, "tier": "gold", "tags": ["a"]}
    assert validate_data(check_form(FORM), data) == {**data, "count": 1}


@pytest.mark.parametrize(("data", "field", "problem"), [
    ({}, "approved", "is required"),
    ({"approved": "yes"}, "approved", "expected true or false"),
    ({"approved": True, "amount": 1001}, "amount", "above the maximum 1000"),
    ({"approved": True, "amount": -1}, "amount", "below the minimum 0"),
    ({"approved": True, "amount": True}, "amount", "expected a number"),
    ({"approved": True, "count": 1.5}, "count", "expected an integer"),
    ({"approved": True, "reason": "x" * 21}, "reason", "at most 20 characters"),
    ({"approved": True, "tier": "bronze"}, "tier", "is not one of"),
    ({"approved": True, "tags": ["a", "c"]}, "tags", "is not one of"),
    ({"approved": True, "tags": "a"}, "tags", "expected a list"),
    ({"approved": True, "tags": ["a", "b", "a"]}, "tags", "at most 2 items"),
])
def test_bad_data_names_the_field(data: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(FormError) as err:
        validate_data(FORM, data)
    assert err.value.field == field and problem in str(err.value)


def test_unknown_fields_are_refused_only_when_the_form_says_so() -> None:
    closed = {**FORM, "additionalProperties": False}
    assert validate_data(FORM, {"approved": False, "extra": 1})["extra"] == 1
    with pytest.raises(FormError, match="'extra' is not in the form"):
        validate_data(closed, {"approved": False, "extra": 1})
