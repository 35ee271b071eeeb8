from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import browser


@pytest.fixture
def dagq_up(tmp_path: Path) -> Iterator[str]:
    """`dagq up --workers 1` with DAGQ_AUTH=off on a free port, for the browser tests; its
    base URL."""
    with browser.dagq_up(tmp_path) as base:
        yield base
