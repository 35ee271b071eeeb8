"""/v1/keys: list API keys and revoke one (`dagq keys list|revoke` through the API).

A key is never shown (only its hash is stored, and that is not shown either). Listing:
an admin key sees every tenant's keys (or ?tenant=), another key its own tenant's.
Revoking needs an admin key; a key of another tenant is a 404 for a non-admin caller
(as a run of another tenant is), its own tenant's a 403."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dagq import service
from dagq.api.auth import KeyCache, principal, tenant_scope
from dagq.api.bodies import path_uuid, read_query
from dagq.api.errors import Forbidden
from dagq.api.schemas import KeyList, KeysQuery
from dagq.models import ApiKey


def revoker(key: ApiKey) -> str:
    """Who revoked a key, as stored on it and logged: the calling key and its tenant."""
    return f"key {key.id} (tenant {key.tenant})"


async def list_keys(request: Request) -> JSONResponse:
    key = await principal(request)
    query = read_query(request, KeysQuery)
    tenant = tenant_scope(key) if tenant_scope(key) is not None else query.tenant
    found = await run_in_threadpool(service.list_api_keys, request.app.state.repo, tenant)
    return JSONResponse(KeyList(keys=found).model_dump(mode="json"))


async def revoke_key(request: Request) -> JSONResponse:
    """200 with the revoked key's record (again: the same record, nothing changes)."""
    key = await principal(request)
    key_id = path_uuid(request, "key_id", "API key")
    repo = request.app.state.repo
    if not key.admin:
        # Its own tenant's keys exist for it (it can list them): 403; any other: 404.
        await run_in_threadpool(repo.tenants.get_api_key, key_id, key.tenant)
        raise Forbidden("revoking a key needs an admin key "
                        "(`dagq keys create --tenant NAME --admin`)")
    record, key_hash = await run_in_threadpool(
        lambda: service.revoke_api_key(repo, key_id, tenant=None, by=revoker(key)))
    cache: KeyCache = request.app.state.keys
    cache.forget(key_hash)  # this process: at once (others: within the cache's TTL)
    return JSONResponse(record.model_dump(mode="json"))


routes = [
    Route("/v1/keys", list_keys, methods=["GET"]),
    Route("/v1/keys/{key_id}", revoke_key, methods=["DELETE"]),
]
