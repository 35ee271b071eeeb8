"""The API's key cache and a revoke that races a lookup: the lookup read the key's row
before the revoke committed, forget() ran, then the lookup finished. The key must not be
cached again (it would keep working in this process for KEY_CACHE_TTL_S)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from typing import Any, cast

import pytest

from dagq import service
from dagq.api import auth
from dagq.errors import DatabaseUnavailable
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


class SlowReads:
    """service.authenticate held until released: what each read returns, and how many."""

    def __init__(self, answers: list[ApiKey | None | Exception]) -> None:
        self.answers, self.calls = answers, 0
        self.release = threading.Event()

    def __call__(self, repo: Any, key: str) -> ApiKey | None:
        answer = self.answers[self.calls]
        self.calls += 1
        assert self.release.wait(10)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def _settle() -> None:
    for _ in range(5):  # the lookups reach their await
        await asyncio.sleep(0.01)


def test_requests_that_miss_the_cache_together_share_one_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """50 requests on an expired key: one database read, not 50 (before: 50)."""
    reads = SlowReads([RECORD])
    monkeypatch.setattr(auth.service, "authenticate", reads)

    async def scenario() -> list[ApiKey | None]:
        cache = auth.KeyCache()
        waiting = [asyncio.ensure_future(cache.lookup(cast(Any, None), KEY))
                   for _ in range(50)]
        await _settle()
        reads.release.set()
        found = await asyncio.gather(*waiting)
        assert await cache.lookup(cast(Any, None), KEY) == RECORD  # cached: no read
        return found

    assert asyncio.run(scenario()) == [RECORD] * 50
    assert reads.calls == 1


def test_a_request_after_a_revoke_does_not_join_the_read_before_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """forget() (DELETE /v1/keys/{id}) while a read is under way: a request arriving
    afterwards reads the key's row itself and is refused."""
    reads = SlowReads([RECORD, None])
    monkeypatch.setattr(auth.service, "authenticate", reads)

    async def scenario() -> tuple[ApiKey | None, ApiKey | None]:
        cache = auth.KeyCache()
        before = asyncio.ensure_future(cache.lookup(cast(Any, None), KEY))
        await _settle()
        cache.forget(service.hash_key(KEY))
        after = asyncio.ensure_future(cache.lookup(cast(Any, None), KEY))
        await _settle()
        reads.release.set()
        return await before, await after

    assert asyncio.run(scenario()) == (RECORD, None)  # as when two requests raced it
    assert reads.calls == 2


def test_a_request_that_goes_away_does_not_cancel_the_others_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    reads = SlowReads([RECORD])
    monkeypatch.setattr(auth.service, "authenticate", reads)

    async def scenario() -> ApiKey | None:
        cache = auth.KeyCache()
        first = asyncio.ensure_future(cache.lookup(cast(Any, None), KEY))
        second = asyncio.ensure_future(cache.lookup(cast(Any, None), KEY))
        await _settle()
        first.cancel()  # its client disconnected
        reads.release.set()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        return await second

    assert asyncio.run(scenario()) == RECORD
    assert reads.calls == 1


def test_a_failed_read_reaches_every_waiter_and_the_next_request_reads_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    reads = SlowReads([DatabaseUnavailable("down"), RECORD])
    monkeypatch.setattr(auth.service, "authenticate", reads)

    async def scenario() -> ApiKey | None:
        cache = auth.KeyCache()
        waiting = [asyncio.ensure_future(cache.lookup(cast(Any, None), KEY))
                   for _ in range(3)]
        await _settle()
        reads.release.set()
        failed = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(f, DatabaseUnavailable) for f in failed)  # each a 503
        return await cache.lookup(cast(Any, None), KEY)

    assert asyncio.run(scenario()) == RECORD
    assert reads.calls == 2
