"""What an attempt's outcome is stored as: its outputs, checked as the API checks input
(dagq.jsonsafe), or its error, made storable whatever the exception said."""

from __future__ import annotations

import json
import traceback
from typing import Any

from dagq.jsonsafe import unstorable
from dagq.workers.errors import NodeCancelled, NodeTimeout, OutputError, WorkerShutdown

TRACEBACK_LIMIT = 8000


def check_outputs(result: Any, *, plain: bool, max_bytes: int) -> dict[str, Any]:
    """The outputs to record, or OutputError naming what is wrong with them."""
    if plain:  # a plain Dramatiq actor's return value
        result = {"result": result}
    elif result is None:
        result = {}
    if not isinstance(result, dict):
        raise OutputError(f"an executor must return a JSON object, not {type(result).__name__}")
    # First: it bounds the nesting, so json.dumps below cannot hit the recursion limit.
    problem = unstorable(result, "outputs")
    if problem is not None:
        raise OutputError(f"the executor's output is not JSON Postgres can store: {problem}")
    try:
        size = len(json.dumps(result, allow_nan=False, separators=(",", ":")))
    except (TypeError, ValueError, RecursionError) as exc:
        raise OutputError(f"the executor's output is not JSON: {exc}") from None
    if size > max_bytes:
        raise OutputError(f"the executor's output is {size} bytes; the limit is {max_bytes} "
                          "(DAGQ_MAX_OUTPUT_BYTES)")
    return result


def describe_error(exc: BaseException, timeout_s: float | None = None) -> dict[str, Any]:
    """The error stored on the node and in its event: type, message, traceback."""
    if isinstance(exc, NodeTimeout):
        return {"type": "Timeout", "message": f"the node ran past its timeout of {timeout_s}s"}
    if isinstance(exc, NodeCancelled):
        return {"type": "Cancelled", "message": "the run was cancelled or has already failed"}
    if isinstance(exc, WorkerShutdown):
        return {"type": "WorkerShutdown",
                "message": "the worker stopped before the node finished"}
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ in ("builtins", "dagq.workers.errors") \
        else f"{kind.__module__}.{kind.__qualname__}"
    try:
        message, text = str(exc), "".join(traceback.format_exception(exc))
    except Exception as describing:  # noqa: BLE001 - a broken __str__ must not hide the error
        message, text = f"(the exception could not be described: {describing!r})", ""
    return {"type": storable_text(name), "message": storable_text(message[:2000]),
            "traceback": storable_text(text[-TRACEBACK_LIMIT:])}


def storable_text(text: str) -> str:
    """`text` with what Postgres cannot store (NUL, unpaired surrogates) escaped: an
    executor's exception message may contain anything."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
