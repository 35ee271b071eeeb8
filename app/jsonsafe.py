"""What Postgres can store in jsonb and text columns: the one check behind both the
API's input validation (app/api/bodies.py) and the workers' output validation
(workers/outcomes.py), so that the two can never disagree.
"""

from __future__ import annotations

import math
from typing import Any

MAX_JSON_DEPTH = 64


def unstorable(value: Any, where: str = "body") -> str | None:
    """Why `value` cannot be stored, naming where in it, or None if it can.

    Rejected: a NUL character or an unpaired surrogate in a text or a key (Postgres'
    text and jsonb cannot hold them), a non-finite number, and nesting deeper than
    MAX_JSON_DEPTH. The walk is iterative, so no depth (and no cycle) can overflow the
    stack: it stops at the first level past the limit.
    """
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return f"{path}: JSON nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(item, str):
            problem = _text_problem(item, path)
            if problem:
                return problem
        elif isinstance(item, float) and not math.isfinite(item):
            return f"{path}: number out of range"
        elif isinstance(item, dict):
            for key, sub in item.items():
                if isinstance(key, str) and (problem := _text_problem(key, f"{path} key")):
                    return problem
                stack.append((sub, f"{path}.{key}"[:200], depth + 1))
        elif isinstance(item, list | tuple):  # a tuple becomes a JSON array
            stack.extend((sub, f"{path}[{i}]"[:200], depth + 1) for i, sub in enumerate(item))
    return None


def _text_problem(text: str, path: str) -> str | None:
    if "\x00" in text:
        return f"{path}: text may not contain NUL (\\u0000) characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return f"{path}: text contains an unpaired surrogate"
    return None
