"""The rule that ends a run, and how an error is put in an event."""

from __future__ import annotations

from typing import Any


def final_run_status(failed: int, succeeded: int, fail_fast: bool) -> str:
    """The status of a run none of whose nodes is left to run."""
    if failed == 0:
        return "succeeded"
    if fail_fast or succeeded == 0:
        return "failed"
    return "partial_succeeded"


def error_data(error: dict[str, Any] | None) -> dict[str, Any]:
    return {"error": error} if error else {}
