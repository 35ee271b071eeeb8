"""Parsing the CLI's argument values: shared by the local commands and client mode."""

from __future__ import annotations

import json
import uuid
from typing import Any

from dagq.errors import InvalidRequest


def parse_json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(f"{what} is not valid JSON: {exc}") from None


def parse_uuid(text: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise InvalidRequest(f"{text!r} is not a {what} id (a UUID)") from None
