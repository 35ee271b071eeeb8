"""The head of a run's error, as a list of runs shows it (GET /v1/runs): the failed node,
the error's type and the first line of its message. Its own module so that
dagq.api.schemas stays within the size limit; named there as well."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_ERROR_LINE_CHARS = 300


def _first_line(text: str, limit: int = _ERROR_LINE_CHARS) -> str:
    """The first non-blank line of `text`, stripped, cut to `limit` characters (an
    ellipsis ends a cut line): what a list row has room for."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else f"{line[:limit - 1]}…"


class RunErrorSummary(BaseModel):
    """A run's error in a list of runs: the node that failed and the first line of its
    message. The whole error (and its traceback) is in GET /v1/runs/{id}."""

    model_config = ConfigDict(frozen=True)

    node: str | None = Field(None, description="the node that failed (none: the run itself)")
    type: str | None = Field(None, description="the error's type, e.g. `TimeoutError`")
    message: str = Field(description="the first line of the message, at most "
                                     f"{_ERROR_LINE_CHARS} characters")

    @classmethod
    def of(cls, error: Any) -> RunErrorSummary | None:
        """From a run's stored error ({node, type, message, ...}; anything else is shown
        as its text)."""
        if error is None or isinstance(error, RunErrorSummary):
            return error
        if not isinstance(error, dict):
            return cls(message=_first_line(str(error)))
        node, kind, message = error.get("node"), error.get("type"), error.get("message")
        return cls(node=node if isinstance(node, str) else None,
                   type=kind if isinstance(kind, str) else None,
                   message=_first_line(message if isinstance(message, str) else str(message or "")))
