from __future__ import annotations

import pytest

from tests.harness.live_api import LiveApi


@pytest.fixture
def api(live_api: LiveApi) -> LiveApi:
    """The clients' tests call the API on a real socket: here `api` is the shared
    `live_api` (tests/integration/conftest.py)."""
    return live_api
