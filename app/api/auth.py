"""Who is calling: `Authorization: Bearer <key>` checked with service.authenticate.

Valid keys are remembered for KEY_CACHE_TTL_S (by hash, never the key itself), which
saves a database round trip per request. When a key's entry expires, the requests that
arrive while it is read again wait for that one read instead of each making its own
(with 50-200 clients on one key, each expiry was 50-200 lookups at once, queued on the
thread pool and the connection pool ahead of the submissions' writes). A key revoked
through this API process (DELETE /v1/keys/{id}) is forgotten at once; in the other API
processes (`--processes`, other hosts) and after `dagq keys revoke` on the database, it
stops working within KEY_CACHE_TTL_S (10 s) at most.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from contextvars import ContextVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from dagq import service
from dagq.api.errors import Forbidden, Unauthorized
from dagq.models import ApiKey
from dagq.store import Store

# DAGQ_AUTH=off: requests without a key act as an admin of tenant "default".
ANONYMOUS_ADMIN = ApiKey(id=uuid.UUID(int=0), tenant="default", admin=True)
KEY_CACHE_TTL_S = 10.0
KEY_CACHE_SIZE = 4096
# The key of the request the current task serves; a scope of the API's log lines (their
# `tenant`: dagq.runtime.logs, registered by create_app).
caller: ContextVar[ApiKey | None] = ContextVar("dagq_api_caller", default=None)


class KeyCache:
    """Recently authenticated keys, by hash. Unknown keys are never cached, so a key
    made a moment ago works at once."""

    def __init__(self, ttl_s: float = KEY_CACHE_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._found: dict[str, tuple[float, ApiKey]] = {}
        self._lock = threading.Lock()
        # Bumped by every forget(): a lookup that read the key's row before a revoke
        # committed must not put the key back into the cache after forget() ran.
        self._forgets = 0
        # The lookup under way per key hash (event loop only), shared by the requests
        # that miss the cache meanwhile; forget() drops it, so a request that arrives
        # after a revoke reads the key's row itself.
        self._reading: dict[str, asyncio.Future[ApiKey | None]] = {}

    def cached(self, key: str) -> ApiKey | None:
        """The key's record if it was authenticated less than ttl_s ago (no I/O)."""
        with self._lock:
            hit = self._found.get(service.hash_key(key))
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        return None

    def forget(self, key_hash: str) -> None:
        """Drop a (revoked) key, so this process never serves it from the cache again."""
        with self._lock:
            self._found.pop(key_hash, None)
            self._forgets += 1
            self._reading.pop(key_hash, None)

    async def lookup(self, repo: Store, key: str) -> ApiKey | None:
        """The key's record: cached, or read once however many requests ask meanwhile."""
        if (found := self.cached(key)) is not None:
            return found
        key_hash = service.hash_key(key)
        reading = self._reading.get(key_hash)
        if reading is None:
            reading = asyncio.ensure_future(run_in_threadpool(self.authenticate, repo, key))
            self._reading[key_hash] = reading
            reading.add_done_callback(lambda done: self._done_reading(key_hash, done))
        # shield: a request that goes away (client gone) must not cancel the others' read
        return await asyncio.shield(reading)

    def _done_reading(self, key_hash: str, done: asyncio.Future[ApiKey | None]) -> None:
        if self._reading.get(key_hash) is done:
            del self._reading[key_hash]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter got it (or none was left)

    def authenticate(self, repo: Store, key: str) -> ApiKey | None:
        """service.authenticate, remembered when the key is valid (blocking)."""
        now = time.monotonic()
        with self._lock:
            forgets = self._forgets
        found = service.authenticate(repo, key)
        if found is not None and self.ttl_s > 0:
            with self._lock:
                if self._forgets != forgets:  # a revoke raced this read: do not cache
                    return found
                if len(self._found) >= KEY_CACHE_SIZE:
                    self._found.clear()
                self._found[service.hash_key(key)] = (now, found)
        return found


async def principal(request: Request) -> ApiKey:
    """The caller's key; 401 when it is missing (auth on) or unknown. The lines the
    request logs from then on carry its tenant (`caller`)."""
    found = await _identify(request)
    caller.set(found)  # this request's task only: each request runs in a task of its own
    return found


async def _identify(request: Request) -> ApiKey:
    header = request.headers.get("authorization")
    if header is None:
        if request.app.state.settings.auth == "off":
            return ANONYMOUS_ADMIN
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' "
                           "(create one with `dagq keys create --tenant NAME`)")
    scheme, _, key = header.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("the Authorization header must be 'Bearer <key>'")
    keys: KeyCache = request.app.state.keys
    found = await keys.lookup(request.app.state.repo, key)
    if found is None:
        raise Unauthorized("unknown or revoked API key")
    return found


async def admin(request: Request) -> ApiKey:
    """An admin key, or 403."""
    key = await principal(request)
    if not key.admin:
        raise Forbidden("this needs an admin key (`dagq keys create --tenant NAME --admin`)")
    return key


def tenant_scope(key: ApiKey) -> str | None:
    """The tenant a key may see; None means every tenant (admin)."""
    return None if key.admin else key.tenant
