"""A node's or run's error as people read it: its node, type and message, and the
traceback's frames of the user's own code first (dagq's, Dramatiq's and the standard
library's frames are left out: they are the same for every error and hide the cause),
cut at word boundaries. `--verbose` shows the error whole instead."""

from __future__ import annotations

import os
import re
import sysconfig
from typing import Any

SHORT = 60  # a node table cell
MESSAGE = 300  # the message in `run show`'s error lines
FRAMES = 5  # the user's innermost frames shown
_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+), in (?P<func>.+)$')


def _not_users() -> tuple[str, ...]:
    """Where frames that are not the user's code live: dagq (both of its source trees),
    Dramatiq and the standard library."""
    import dramatiq

    import dagq
    import dagq.workers

    files = (dagq.__file__, dagq.workers.__file__, dramatiq.__file__)
    # As imported, and where an editable install's links point.
    roots = {os.path.dirname(f) for f in files} | {
        os.path.dirname(os.path.realpath(f)) for f in files}
    return tuple(os.path.join(root, "") for root in roots)


def _stdlib() -> tuple[str, tuple[str, ...]]:
    """The standard library's folder, and the folders of installed packages, which may
    lie inside it (a Python without a venv: .../lib/python3.11/site-packages)."""
    paths = sysconfig.get_paths()
    return (os.path.join(paths["stdlib"], ""),
            tuple(os.path.join(paths[name], "") for name in ("purelib", "platlib")))


def _is_stdlib(path: str) -> bool:
    stdlib, installed = _stdlib()
    return path.startswith(stdlib) and not path.startswith(installed)


def shorten(text: str, width: int) -> str:
    """`text` on one line, cut at the last word boundary before `width` (with "…")."""
    text = " ".join(str(text).split())
    if len(text) <= width:
        return text
    cut = text[:width - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > width // 2 else cut).rstrip(" ,;:.") + "…"


def user_frames(traceback: str, limit: int = FRAMES) -> list[str]:
    """The traceback's frames in the user's code, innermost last, at most `limit`:
    "path:line in func" and the frame's source line when the traceback has it."""
    skip = _not_users()
    lines = traceback.splitlines()
    frames = []
    for i, line in enumerate(lines):
        match = _FRAME.match(line)
        path = match["path"] if match else ""
        if match is None or path.startswith(skip) or path.startswith("<") or _is_stdlib(path):
            continue
        code = lines[i + 1].strip() if i + 1 < len(lines) and not _FRAME.match(
            lines[i + 1]) else ""
        where = f"{match['path']}:{match['line']} in {match['func']}"
        frames.append(where + (f": {code}" if code else ""))
    return frames[-limit:]


def one_line(error: Any, width: int = SHORT) -> str:
    """"Type: message" cut at a word boundary (a node table cell)."""
    if not isinstance(error, dict):
        return shorten(str(error), width) if error is not None else ""
    kind, message = error.get("type"), error.get("message")
    text = f"{kind}: {message}" if kind and message else str(kind or message or error)
    return shorten(text, width)


def error_lines(error: Any, node: str | None = None) -> list[str]:
    """A failed node's (or run's) error: "node: Type: message", then the user's frames."""
    if not isinstance(error, dict):
        return [shorten(str(error), MESSAGE)]
    node = node or error.get("node")
    head = (f"node {node}: " if node else "") + one_line(error, MESSAGE)
    frames = user_frames(str(error.get("traceback") or ""))
    return [head, *(f"  at {frame}" for frame in frames)]
