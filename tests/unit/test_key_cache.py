"""The API's key cache and a revoke that races a lookup: the lookup read the key's row
before the revoke committed, forget() ran, then the lookup finished. The key must not be
cached again (it would keep working in this process for KEY_CACHE_TTL_S)."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest

from dagq import service
from dagq.api import auth
from dagq.models import ApiKey

KEY = "dagq_" + "k" * 43
RECORD = ApiKey(id=uuid.uuid4(), tenant="acme", admin=False)


def test_a_revoke_during_a_lookup_keeps_the_key_out_of_the_cache(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cache = auth.KeyCache()

    def read_then_revoked(repo: Any, key: str) -> ApiKey:
        cache.forget(service.hash_key(key))  # the revoke commits meanwhile
        return RECORD

    monkeypatch.setattr(auth.service, "authenticate", read_then_revoked)
    assert cache.authenticate(cast(Any, None), KEY) == RECORD  # this request was in time
    assert cache.cached(KEY) is None


def test_a_lookup_without_a_revoke_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = auth.KeyCache()
    monkeypatch.setattr(auth.service, "authenticate", lambda repo, key: RECORD)
    cache.authenticate(cast(Any, None), KEY)
    assert cache.cached(KEY) == RECORD
    cache.forget(service.hash_key(KEY))
    assert cache.cached(KEY) is None
