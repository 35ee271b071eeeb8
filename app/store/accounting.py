"""Per-run tallies of one transaction and the rule that ends a run."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any


@dataclass
class Tally:
    """Top-level nodes of one run that became terminal in this transaction."""

    done: int = 0
    succeeded: int = 0
    failed: int = 0
    fail_run: bool = False
    error: dict[str, Any] | None = None


class Tallies(dict[uuid.UUID, Tally]):
    """Per-run tallies of one transaction; a run appears as soon as it is touched."""

    def __missing__(self, run_id: uuid.UUID) -> Tally:
        tally = self[run_id] = Tally()
        return tally


def final_run_status(failed: int, succeeded: int, fail_fast: bool) -> str:
    """The status of a run none of whose nodes is left to run."""
    if failed == 0:
        return "succeeded"
    if fail_fast or succeeded == 0:
        return "failed"
    return "partial_succeeded"


def error_data(error: dict[str, Any] | None) -> dict[str, Any]:
    return {"error": error} if error else {}



