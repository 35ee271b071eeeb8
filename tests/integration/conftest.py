"""The API the integration tests drive, defined once: `api` in process (Starlette's
TestClient) and `live_api` on a real socket (uvicorn in a thread), each on the per-test
database with keys for tenants acme (one admin key) and globex.

A module or test that needs other settings says so with a marker, e.g.
`pytestmark = pytest.mark.api_settings(max_body_bytes=1000)`; both fixtures pass its
keyword arguments on to the harness as dagq.config.Settings fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness.api import Api
from tests.harness.live_api import LiveApi


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "api_settings(**fields): Settings fields for the api / live_api fixtures")


def api_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The fields of the closest `api_settings` marker (the test's, else its module's)."""
    marker = request.node.get_closest_marker("api_settings")
    if marker is None:
        return {}
    if marker.args:
        raise TypeError("api_settings takes keyword arguments only (Settings fields)")
    return dict(marker.kwargs)


@pytest.fixture
def api(request: pytest.FixtureRequest, db_url: str) -> Iterator[Api]:
    with Api(db_url, **api_settings(request)) as harness:
        yield harness


@pytest.fixture
def live_api(request: pytest.FixtureRequest, db_url: str) -> Iterator[LiveApi]:
    with LiveApi(db_url, **api_settings(request)) as live:
        yield live
