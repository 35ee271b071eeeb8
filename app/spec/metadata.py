"""Run metadata: the platform's own ids on a run (`{"conversation_id": "c-42"}`), stored
on `dagq.runs.metadata` and searched with GET /v1/runs?meta.K=V.

A submit's metadata is a JSON object of at most MAX_KEYS keys (1-64 characters of
`[A-Za-z0-9_.:-]`) whose values are scalars: text of at most MAX_TEXT characters, a
finite number, or a boolean; at most MAX_BYTES as compact JSON. The one check is here,
used by the service (every submit path) and the CLI, and stated by the API's schema, so
each names the offending key alike.

A filter value arrives as text (a query string, `--meta k=v`) and compares as a JSON
scalar could be written in it: `meta.n=5` matches the number 5 and the string "5",
`meta.ok=true` the boolean true and the string "true", `meta.c=c-42` the string "c-42"
only. `candidates` lists the scalars one filter's text matches; `json_path` writes the
filters as one jsonpath predicate, which the GIN index (jsonb_path_ops) answers.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from dagq.errors import InvalidRequest

MAX_KEYS = 16
MAX_TEXT = 256
MAX_BYTES = 2048
MAX_FILTERS = 8  # meta.K=V filters in one query (each a term of the index search)
KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
_KEY = re.compile(KEY_PATTERN)
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")

Scalar = str | int | float | bool


def _bad(message: str, key: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, {"key": key} if key is not None else None)


def check_key(key: Any, where: str = "metadata") -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        shown = key[:100] if isinstance(key, str) else key
        raise _bad(f"{where} key {shown!r} must be 1 to 64 characters of A-Z a-z 0-9 _ . : -",
                   str(shown))
    return key


def check_value(key: str, value: Any, where: str = "metadata") -> Scalar:
    """A value a run's metadata may hold, or InvalidRequest naming its key."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value  # any size: jsonb keeps a number exactly (and the size is bounded)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _bad(f"{where} value of {key!r} must be a finite number", key)
        return value
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise _bad(f"{where} value of {key!r} is longer than {MAX_TEXT} characters", key)
        if "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            raise _bad(f"{where} value of {key!r} holds a character Postgres cannot store",
                       key)
        return value
    kind = "null" if value is None else type(value).__name__
    raise _bad(f"{where} value of {key!r} must be a string, a number or a boolean "
               f"(not {kind})", key)


def check_metadata(metadata: Any) -> dict[str, Scalar] | None:
    """A submit's metadata as stored (None for none, or an empty object), or
    InvalidRequest (422) naming the key at fault; the checks need no database."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise _bad("metadata must be a JSON object of key -> string, number or boolean")
    if len(metadata) > MAX_KEYS:
        raise _bad(f"metadata has {len(metadata)} keys; at most {MAX_KEYS} are allowed")
    checked = {check_key(key): check_value(key, value) for key, value in metadata.items()}
    size = len(json.dumps(checked, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_BYTES:
        raise _bad(f"metadata is {size} bytes as JSON; at most {MAX_BYTES} are allowed")
    return checked or None


def candidates(value: str) -> list[Scalar]:
    """The JSON scalars a filter's text matches: itself as a string, and the number or
    boolean it spells (`5` -> "5" and 5; `true` -> "true" and true)."""
    found: list[Scalar] = [value]
    if value in ("true", "false"):
        found.append(value == "true")
    elif _NUMBER.fullmatch(value):
        number = json.loads(value)
        if isinstance(number, int) or math.isfinite(number):
            found.append(number)
    return found


def check_filters(filters: Mapping[str, str], where: str = "meta") -> dict[str, str]:
    """meta.K=V filters checked: keys as in metadata, values text of at most MAX_TEXT."""
    if len(filters) > MAX_FILTERS:
        raise _bad(f"at most {MAX_FILTERS} metadata filters may be combined "
                   f"({len(filters)} given)")
    for key, value in filters.items():
        check_key(key, where)
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise _bad(f"{where} filter of {key!r} must be text of at most {MAX_TEXT} "
                       "characters", key)
        check_value(key, value, where)  # (no NUL, no lone surrogate)
    return dict(filters)


def json_path(filters: Mapping[str, str]) -> str | None:
    """The filters as one jsonpath predicate for `metadata @@ $1` (None: no filter):
    `$."c" == "c-42" && ($."n" == "5" || $."n" == 5)`. The GIN index answers it whatever
    the plan, a generic one included (an array of objects, `@> ANY ($1)`, is indexable only
    when the planner sees the array). Keys match KEY_PATTERN and values are checked text,
    written as JSON literals (jsonpath's own string syntax): the text is never code."""
    if not filters:
        return None
    terms = []
    for key in sorted(check_filters(filters)):
        path = f"$.{json.dumps(check_key(key))}"
        choices = [f"{path} == {json.dumps(value, ensure_ascii=False)}"
                   for value in candidates(filters[key])]
        terms.append(choices[0] if len(choices) == 1 else f"({' || '.join(choices)})")
    return " && ".join(terms)


def parse_pairs(pairs: list[str] | None, where: str = "--meta") -> dict[str, str]:
    """`k=v` arguments (the CLI's --meta) as a mapping; the same key twice is an error."""
    found: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise _bad(f"{where} {pair[:100]!r} must be KEY=VALUE")
        check_key(key, where)
        if key in found:
            raise _bad(f"{where} {key!r} is given twice", key)
        found[key] = value
    return found
