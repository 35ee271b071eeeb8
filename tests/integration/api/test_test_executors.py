"""builtin.fail and builtin.crash exist only with DAGQ_TEST_EXECUTORS=on (issue 12): off,
the API rejects them as unknown executors, whatever dagq.executors remembers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dagq.config import get_settings
from dagq.models import ExecutorInfo
from tests.harness.api import Api, assert_error, count_rows

FAILING = {"name": "failing", "nodes": {"a": {"executor": "builtin.fail", "max_attempts": 1}}}
CRASHING = {"name": "crashing", "nodes": {"c": {"executor": "builtin.crash"}}}


@pytest.fixture
def test_executors(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """DAGQ_TEST_EXECUTORS unset, as in production (the suite sets it on)."""
    monkeypatch.delenv("DAGQ_TEST_EXECUTORS")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def api(test_executors: None, api: Api) -> Api:
    """The shared `api`, created after `test_executors` unset DAGQ_TEST_EXECUTORS (the app
    reads it when it starts)."""
    return api


def test_off_by_default_even_when_a_worker_once_served_them(api: Api, sql) -> None:
    assert get_settings().test_executors == "off"
    # A worker that ran with DAGQ_TEST_EXECUTORS=on left its executors behind.
    api.repo.fleet.register_worker(
        worker="old", hostname="h", pid=1, queues=["default"], threads=1,
        executors=[ExecutorInfo(name="builtin.fail"), ExecutorInfo(name="builtin.crash")])
    api.repo.fleet.stop_worker("old")
    for flow, executor in ((FAILING, "builtin.fail"), (CRASHING, "builtin.crash")):
        error = assert_error(api.client.post("/v1/runs", json={"workflow": flow},
                                             headers=api.acme), 422, "invalid_workflow")
        assert f"unknown executor '{executor}'" in error["message"]
        assert "DAGQ_TEST_EXECUTORS=on" in error["message"]
        assert error["details"]["executor"] == executor
        assert_error(api.client.post("/v1/workflows", json=flow, headers=api.admin), 422,
                     "invalid_workflow")
    assert count_rows(sql, "runs") == 0 and count_rows(sql, "workflows") == 0
    assert api.submit(api.acme)["created"] is True  # the other built-ins are unaffected


def test_a_registered_workflow_naming_them_is_refused_once_they_are_off(
        api: Api, monkeypatch: pytest.MonkeyPatch, sql) -> None:
    monkeypatch.setenv("DAGQ_TEST_EXECUTORS", "on")
    get_settings.cache_clear()
    assert api.client.post("/v1/workflows", json=FAILING, headers=api.admin).status_code == 201
    assert api.submit(api.acme, workflow="failing")["created"] is True
    monkeypatch.setenv("DAGQ_TEST_EXECUTORS", "off")
    get_settings.cache_clear()
    assert_error(api.client.post("/v1/runs", json={"workflow": "failing"}, headers=api.acme),
                 422, "invalid_workflow")
    assert count_rows(sql, "runs") == 1
