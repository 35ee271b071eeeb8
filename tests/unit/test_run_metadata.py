"""Run metadata's rules (dagq.spec.metadata, issue 34 item 2): the bounds with a message
naming the key at fault, and how a filter's text compares with stored JSON scalars."""

from __future__ import annotations

from typing import Any

import pytest

from dagq.errors import InvalidRequest
from dagq.spec.metadata import (
    MAX_FILTERS,
    MAX_KEYS,
    candidates,
    check_filters,
    check_metadata,
    json_path,
    parse_pairs,
)


def test_scalars_within_the_bounds_are_kept() -> None:
    metadata = {"conversation_id": "c-42", "user.id": 7, "score": 0.5, "beta": True,
                "app:name": "x" * 256}
    assert check_metadata(metadata) == metadata
    assert check_metadata({"big": 2**70}) == {"big": 2**70}  # jsonb keeps it exactly
    assert check_metadata(None) is None and check_metadata({}) is None  # nothing stored
    assert check_metadata({f"k{i}": i for i in range(MAX_KEYS)}) is not None


@pytest.mark.parametrize(("metadata", "key", "words"), [
    ({"bad key": 1}, "bad key", "characters"),
    ({"": 1}, "", "characters"),
    ({"k" * 65: 1}, "k" * 65, "characters"),
    ({"ok": None}, "ok", "not null"),
    ({"ok": [1]}, "ok", "not list"),
    ({"ok": {"a": 1}}, "ok", "not dict"),
    ({"ok": "x" * 257}, "ok", "longer than 256"),
    ({"ok": float("nan")}, "ok", "finite"),
    ({"ok": "a\x00b"}, "ok", "cannot store"),
    ({"ok": "\ud800"}, "ok", "cannot store"),
])
def test_a_bad_key_or_value_is_named(metadata: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_metadata(metadata)
    assert repr(key[:100]) in caught.value.message and words in caught.value.message
    assert caught.value.details == {"key": key[:100]}


def test_too_many_keys_too_many_bytes_or_not_an_object() -> None:
    with pytest.raises(InvalidRequest, match="at most 16"):
        check_metadata({f"k{i}": i for i in range(MAX_KEYS + 1)})
    with pytest.raises(InvalidRequest, match="2499 bytes as JSON; at most 2048"):
        check_metadata({f"k{i}": "é" * 100 for i in range(12)})  # 2 bytes a character
    with pytest.raises(InvalidRequest, match="JSON object"):
        check_metadata(["a"])


def test_a_filter_matches_the_scalars_its_text_spells() -> None:
    assert candidates("c-42") == ["c-42"]
    assert candidates("5") == ["5", 5]
    assert candidates("-2.5e3") == ["-2.5e3", -2500.0]
    assert candidates("true") == ["true", True] and candidates("false") == ["false", False]
    assert candidates("05") == ["05"] and candidates("True") == ["True"]  # not JSON numbers
    assert candidates("null") == ["null"]  # a stored value is never null
    assert candidates("1e999") == ["1e999"]  # not a finite number


def test_filters_and_pairs_are_checked() -> None:
    assert check_filters({"a": "1"}) == {"a": "1"}
    with pytest.raises(InvalidRequest, match="'a b'"):
        check_filters({"a b": "1"})
    with pytest.raises(InvalidRequest, match="at most 256"):
        check_filters({"a": "x" * 257})
    with pytest.raises(InvalidRequest, match=f"at most {MAX_FILTERS}"):
        check_filters({f"k{i}": "v" for i in range(MAX_FILTERS + 1)})
    assert parse_pairs(["a=1", "b==2", "c="]) == {"a": "1", "b": "=2", "c": ""}
    assert parse_pairs(None) == {}
    for bad, words in ((["a"], "KEY=VALUE"), (["a=1", "a=2"], "twice"),
                       (["bad key=1"], "'bad key'")):
        with pytest.raises(InvalidRequest, match=words):
            parse_pairs(bad)


def test_filters_as_one_jsonpath_predicate() -> None:
    assert json_path({}) is None
    assert json_path({"c": "c-42"}) == '$."c" == "c-42"'
    assert json_path({"n": "5", "a.b:c-d": "x"}) == \
        '$."a.b:c-d" == "x" && ($."n" == "5" || $."n" == 5)'
    # text is a JSON string literal whatever it holds: quotes, backslashes, && and $
    assert json_path({"q": '" || $.x == "y\\'}) == '$."q" == "\\" || $.x == \\"y\\\\"'
    assert json_path({"u": "é\n"}) == '$."u" == "é\\n"'
    with pytest.raises(InvalidRequest, match="cannot store"):
        json_path({"q": "a\x00"})
