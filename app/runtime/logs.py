"""Logging set-up shared by every dagq process: text lines (the default) or JSON lines.

DAGQ_LOG_FORMAT=json writes one JSON object per line: `ts` (UTC, ISO 8601), `level`,
`logger`, `msg`, `pid`; then `run_id`, `node_key`, `attempt`, `tenant` when the line is
about one (passed with `extra=`, or read from a scope a process registered: a worker's
is the node its thread runs); `trace_id` and `span_id` while `trace_ids` holds them (set
by tracing); `exc` when the line carries a traceback. The text format is the one dagq
always wrote; a line about a node gets its ids appended in brackets.

Nothing here runs for a line whose level is disabled: the ids are looked up when a line
is written, not when a node starts.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
# The ids a line may be about, in the order they are written.
FIELDS = ("run_id", "node_key", "attempt", "tenant")

# (trace_id, span_id) of the span the current code runs in, as W3C hex strings. Reserved
# for tracing (issue 31 item 1): whoever starts a span sets it, every line written
# meanwhile carries the two ids.
trace_ids: ContextVar[tuple[str, str] | None] = ContextVar("dagq_trace_ids", default=None)

# Getters of the object a line is about when its call passed no ids (an object with some
# of FIELDS as attributes, or None). Registered once per process (add_scope).
_scopes: list[Callable[[], object | None]] = []


def add_scope(getter: Callable[[], object | None]) -> None:
    """Lines written while `getter()` returns an object carry its FIELDS attributes
    (a worker registers its current node). Idempotent."""
    if getter not in _scopes:
        _scopes.append(getter)


def line_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ids `record` is about: its own (`extra=`), else those of the current scope."""
    found: dict[str, Any] = {}
    for name in FIELDS:
        value = record.__dict__.get(name)
        if value is not None:
            found[name] = value
    if "run_id" not in found:
        for getter in _scopes:
            scope = getter()
            if scope is not None:
                for name in FIELDS:
                    value = getattr(scope, name, None)
                    if value is not None:
                        found.setdefault(name, value)
                break
    return found


class TextFormatter(logging.Formatter):
    """dagq's text line; a line about a node ends with `[run=… node=… attempt=…]`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        text = super().formatMessage(record)
        fields = line_fields(record)
        if not fields:
            return text
        tags = " ".join(f"{_TAGS[name]}={value}" for name, value in fields.items())
        return f"{text} [{tags}]"


_TAGS = {"run_id": "run", "node_key": "node", "attempt": "attempt", "tenant": "tenant"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _iso_utc(record.created), "level": record.levelname,
            "logger": record.name, "msg": record.getMessage(), "pid": record.process,
        }
        for name, value in line_fields(record).items():
            entry[name] = value if isinstance(value, int | str) else str(value)
        ids = trace_ids.get()
        if ids is not None:
            entry["trace_id"], entry["span_id"] = ids
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # ASCII only: a message may hold anything (unpaired surrogates included), and
        # the line must reach stderr whatever its encoding.
        return json.dumps(entry, default=str)


def _iso_utc(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def formatter_for(fmt: str) -> logging.Formatter:
    """The formatter of a DAGQ_LOG_FORMAT value; ValueError for any other value."""
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return TextFormatter()
    raise ValueError(f"DAGQ_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")


def say(text: str) -> None:
    """Tell the person running a server command something (`dagq up`'s banner): printed
    as it is with text logs; with JSON logs, an INFO line of logger `dagq` (stderr stays
    one JSON object per line for the collector that reads it)."""
    if _chosen == ["json"]:
        logging.getLogger("dagq").info("%s", text)
    else:
        print(text, file=sys.stderr, flush=True)


_chosen: list[str] = []  # the format setup_logging set up, once it did


def setup_logging(level: str | None, default: str = "INFO", *, fmt: str = "text") -> None:
    """Log at `level` (Settings.log_level), or `default` when it is unset, to stderr in
    format `fmt` (Settings.log_format)."""
    level = level or default
    handler = logging.StreamHandler()
    handler.setFormatter(formatter_for(fmt))
    _chosen[:] = [fmt]
    logging.basicConfig(level=level, handlers=[handler])
    # Dramatiq logs every consumer restart at INFO; keep its chatter at WARNING.
    logging.getLogger("dramatiq").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    logging.getLogger("psycopg.pool").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    # `kill -USR2 <pid>` prints every thread's stack to stderr: how an operator (or a
    # test) sees where a dagq process that does not stop is stuck.
    faulthandler.register(signal.SIGUSR2, all_threads=True)
