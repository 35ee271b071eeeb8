"""Outputs dagq must refuse, built on demand (tests/e2e/bad_outputs.py returns them from a
real worker; tests/unit/test_outputs.py checks them in process)."""

from __future__ import annotations

from typing import Any


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value

