"""What Postgres can store in jsonb and text columns: the one check behind both the
API's input validation (app/api/bodies.py) and the workers' output validation
(workers/outcomes.py), so that the two can never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

MAX_JSON_DEPTH = 64
TOO_DEEP = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"

# A container's place in the value: (its own container's place, its key or index there,
# whether it is a list), the root's being (None, `where`, ...). The path's text is made
# from it only for an error: making it for every value cost twice json.dumps itself.
_Place = tuple[Any, Any, bool]
# A container being walked: its children (last first), its place, their depth.
_Frame = tuple[Iterator[tuple[Any, Any]], _Place, int]


def unstorable(value: Any, where: str = "body") -> str | None:
    """Why `value` cannot be stored, naming where in it, or None if it can.

    Rejected: a NUL character or an unpaired surrogate in a text or a key (Postgres'
    text and jsonb cannot hold them), a non-finite number, and nesting deeper than
    MAX_JSON_DEPTH. The walk is iterative, so no depth (and no cycle) can overflow the
    stack: it stops at the first level past the limit.
    """
    frames: list[_Frame] = []
    if (problem := _enter(frames, value, None, where, 0)) is not None:
        return problem
    while frames:
        children, place, depth = frames[-1]
        for key, sub in children:
            kind = type(sub)  # the common kinds first, without a call
            if kind is str:
                if "\x00" in sub or not sub.isascii():
                    problem = _text_problem(sub)
            elif kind is float:
                if not math.isfinite(sub):
                    problem = "number out of range"
            elif kind is not int and kind is not bool and sub is not None:
                walking = len(frames)
                if (problem := _enter(frames, sub, place, key, depth)) is not None:
                    return problem
                if len(frames) > walking:
                    break  # walk `sub` first; this iterator resumes after it
                continue
            if problem is not None:
                return f"{_path(place, key)}: {problem}"
        else:
            frames.pop()
    return None


def _enter(frames: list[_Frame], item: Any, parent: _Place | None, key: Any,
           depth: int) -> str | None:
    """Check `item`, at `depth`; if it is a container, push its children to walk (an
    error if they would be too deep: the first of them, as the walk would meet it)."""
    if isinstance(item, dict):
        for sub_key in item:
            if isinstance(sub_key, str) and (problem := _text_problem(sub_key)):
                return f"{_path(parent, key)} key: {problem}"
        place = (parent, key, False)
        if item and depth >= MAX_JSON_DEPTH:
            return f"{_path(place, next(reversed(item)))}: {TOO_DEEP}"
        frames.append((reversed(item.items()), place, depth + 1))
    elif isinstance(item, list | tuple):  # a tuple becomes a JSON array
        place = (parent, key, True)
        if item and depth >= MAX_JSON_DEPTH:
            return f"{_path(place, len(item) - 1)}: {TOO_DEEP}"
        indexed = zip(range(len(item) - 1, -1, -1), reversed(item), strict=True)
        frames.append((indexed, place, depth + 1))
    elif (problem := _scalar_problem(item)) is not None:
        return f"{_path(parent, key)}: {problem}"
    return None


def _path(parent: _Place | None, key: Any) -> str:
    """`where.key[index]...` of the value at `key` in `parent`, cut at 200 characters."""
    if parent is None:
        return key  # the root's name, as given
    parts = []
    while parent is not None:
        parts.append(f"[{key}]" if parent[2] else f".{key}")
        parent, key = parent[0], parent[1]
    parts.append(key)  # the root's name
    return "".join(reversed(parts))[:200]


def _scalar_problem(item: Any) -> str | None:
    if isinstance(item, str):
        return _text_problem(item)
    if isinstance(item, float) and not math.isfinite(item):
        return "number out of range"
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "text may not contain NUL (\\u0000) characters"
    if text.isascii():  # no surrogate then
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text contains an unpaired surrogate"
    return None
