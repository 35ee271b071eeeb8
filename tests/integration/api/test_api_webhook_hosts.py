"""A webhook URL (or a submit's callback URL) whose host name cannot even be encoded for a
DNS lookup (an empty or over-long label: Python's idna codec raises UnicodeError, not an
OSError) is a 422 that writes nothing, like any other URL the guard refuses, never a
500."""

from __future__ import annotations

import pytest

from tests.harness.api import ECHO_FLOW, Api, assert_error, count_rows

BAD_HOSTS = ["http://a..example.com/x", "http://.example.com/x",
             "https://" + "a" * 64 + ".example.com/x"]


@pytest.mark.parametrize("url", BAD_HOSTS)
def test_a_host_that_cannot_be_looked_up_is_a_422(api: Api, sql, url: str) -> None:
    error = assert_error(api.client.post("/v1/webhooks", json={
        "url": url, "events": ["run_failed"]}, headers=api.acme), 422, "invalid_request")
    assert error["details"] == {"field": "url"}
    assert count_rows(sql, "webhooks") == 0


@pytest.mark.parametrize("url", BAD_HOSTS[:1])
def test_a_callback_to_such_a_host_is_a_422(api: Api, sql, url: str) -> None:
    response = api.client.post("/v1/runs", json={
        "workflow": ECHO_FLOW, "callback": {"url": url, "events": ["run_failed"]}},
        headers=api.acme)
    assert_error(response, 422, "invalid_request")
    assert count_rows(sql, "webhooks") == 0 and count_rows(sql, "runs") == 0
