"""Fixes from the review of reruns, concurrency keys and the Dramatiq work: each test
failed before its fix."""

from __future__ import annotations

import secrets

import pytest

from dagq import service
from dagq.errors import InvalidRequest
from tests.integration.test_api_helpers import Api
from tests.integration.test_concurrency_keys import chat


def test_a_concurrency_key_value_too_long_is_a_422_that_writes_nothing(
        db_url: str, sql) -> None:
    """An uncompressible 16 kB value made the key's index row too large: Postgres refused
    the insert and the API answered 503 database_unavailable (a 5xx for bad input)."""
    big = secrets.token_hex(8000)
    with Api(db_url) as api:
        response = api.client.post("/v1/runs", json={
            "workflow": chat(), "inputs": {"conversation_id": big}}, headers=api.acme)
        assert response.status_code == 422, response.text
        assert "concurrency key" in response.json()["error"]["message"]
        batch = api.client.post("/v1/runs/batch", json={"runs": [
            {"workflow": chat(), "inputs": {"conversation_id": big}},
            {"workflow": chat(), "inputs": {"conversation_id": "ok"}}]}, headers=api.acme)
        assert batch.status_code == 200, batch.text
        refused, written = batch.json()["results"]
        assert refused["error"]["code"] == "invalid_request"
        assert written["status"] == "queued"  # the rest of the batch is written
        assert sql.execute("SELECT count(*) AS n FROM dagq.runs ").fetchone()["n"] == 1
        with pytest.raises(InvalidRequest, match="concurrency key"):
            service.submit(api.repo, tenant="acme", workflow=chat(),
                           inputs={"conversation_id": big})
