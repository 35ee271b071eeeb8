"""The storability walk (dagq.jsonsafe): the path of a problem is made only for it."""

from __future__ import annotations

import math

from dagq.jsonsafe import MAX_JSON_DEPTH, unstorable


class CountedKey(int):
    """An int key that counts how often it is formatted into a path."""

    formatted = 0

    def __format__(self, spec: str) -> str:
        CountedKey.formatted += 1
        return super().__format__(spec)


def test_the_path_is_made_only_for_an_error() -> None:
    CountedKey.formatted = 0
    value = {"rows": [{CountedKey(i): "ok", "n": 1.5, "t": ("é", None, True)}
                      for i in range(100)]}
    assert unstorable(value, "outputs") is None
    assert CountedKey.formatted == 0  # a path for each value cost more than json.dumps
    value["rows"][7][CountedKey(3)] = "a\x00b"
    assert unstorable(value, "outputs") == (
        "outputs.rows[7].3: text may not contain NUL (\\u0000) characters")


def test_paths_name_keys_indexes_and_are_cut_at_200_characters() -> None:
    assert unstorable({"a": [0, {"b": math.nan}]}, "outputs") == (
        "outputs.a[1].b: number out of range")
    assert unstorable({"a": {"k\x00": 1}}) == (
        "body.a key: text may not contain NUL (\\u0000) characters")
    assert unstorable({"x" * 300: "\ud800"}, "query") == (
        f"query.{'x' * 300}"[:200] + ": text contains an unpaired surrogate")
    deep: list = [1]
    for _ in range(MAX_JSON_DEPTH):
        deep = [deep]
    assert unstorable(deep, "outputs") == (
        ("outputs" + "[0]" * (MAX_JSON_DEPTH + 1))[:200]
        + f": JSON nested deeper than {MAX_JSON_DEPTH} levels")
    assert unstorable(deep[0], "outputs") is None  # at the limit
    assert unstorable("\x00", "outputs") == (
        "outputs: text may not contain NUL (\\u0000) characters")
