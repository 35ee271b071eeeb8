from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import WorkerFleet


@pytest.fixture
def fleet(db_url: str, tmp_path: Path) -> Iterator[WorkerFleet]:
    fleet = WorkerFleet(db_url, tmp_path)
    yield fleet
    fleet.stop_all()
