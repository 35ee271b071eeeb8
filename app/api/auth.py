"""Who is calling: `Authorization: Bearer <key>` checked with service.authenticate."""

from __future__ import annotations

import uuid

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from app import service
from app.api.errors import Forbidden, Unauthorized
from app.models import ApiKey

# DAGQ_AUTH=off: requests without a key act as an admin of tenant "default".
ANONYMOUS_ADMIN = ApiKey(id=uuid.UUID(int=0), tenant="default", admin=True)


async def principal(request: Request) -> ApiKey:
    """The caller's key; 401 when it is missing (auth on) or unknown."""
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
    found = await run_in_threadpool(service.authenticate, request.app.state.repo, key)
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
