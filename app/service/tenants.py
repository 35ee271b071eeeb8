"""Tenants (weights, quotas) and API keys: checked here, stored by the store."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid

from dagq.errors import InvalidRequest
from dagq.models import (
    ApiKey,
    ApiKeyRecord,
    TenantRecord,
)
from dagq.store import Store

KEY_PREFIX = "dagq_"
MIN_SETTING = 0.001  # smallest weight or submit rate (smaller would round to 0 as real)
MAX_WEIGHT = 1000.0
MAX_RATE = 1_000_000.0
INT32_MAX = 2**31 - 1
MAX_KEYS_LISTED = 10_000  # GET /v1/keys and `dagq keys list` answer at most this many
CLI_REVOKER = "cli"  # revoked_by of a key revoked through the database (`dagq keys revoke`)

log = logging.getLogger("dagq.audit")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(repo: Store, tenant: str, *, admin: bool = False) -> str:
    """A new random key for `tenant`; only its hash is stored. Returned once."""
    tenant = tenant.strip()
    if not tenant or len(tenant) > 200:
        raise InvalidRequest("a tenant name needs 1 to 200 characters")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    repo.tenants.insert_api_key(tenant=tenant, key_hash=hash_key(key), admin=admin)
    return key


def authenticate(repo: Store, key: str) -> ApiKey | None:
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    digest = hash_key(key)
    found = repo.tenants.api_key_by_hash(digest)
    # Found by an index lookup on the hash; confirm the stored hash in constant time.
    if found is None or not hmac.compare_digest(found.key_hash, digest):
        return None
    return found


def check_tenant_name(name: str) -> None:
    if not 0 < len(name) <= 200 or "\x00" in name:
        raise InvalidRequest("a tenant name needs 1 to 200 characters (no NUL)")


def list_api_keys(repo: Store, tenant: str | None) -> list[ApiKeyRecord]:
    """The keys of `tenant` (None: all), revoked ones too; never a key or its hash."""
    if tenant is not None:
        check_tenant_name(tenant)
    return repo.tenants.list_api_keys(tenant, limit=MAX_KEYS_LISTED)


def revoke_api_key(repo: Store, key_id: uuid.UUID, *, tenant: str | None,
                   by: str) -> tuple[ApiKeyRecord, str]:
    """Revoke a key of `tenant` (None: any) for good: it authenticates no more (the API's
    key cache forgets it: dagq.api.auth). `by` names who revoked it; it is stored on the
    key and logged (the audit trail). Returns the record and the key's hash."""
    record, key_hash = repo.tenants.revoke_api_key(key_id, tenant, by)
    # INFO: the API logs it; the CLI (WARNING and up) has the stored revoked_by instead.
    # `by` is this caller; revoked_by the first revoker (a repeated revoke changes nothing,
    # and its line says so rather than crediting the first revoker with a new revoke; the
    # same caller revoking twice is not told apart: its line repeats the first).
    again = record.revoked_by != by
    log.info("api_key_revoked key_id=%s key_tenant=%r admin=%s by=%r revoked_by=%r "
             "revoked_at=%s already_revoked=%s",
             record.id, record.tenant, record.admin, by, record.revoked_by,
             record.revoked_at.isoformat() if record.revoked_at else None, again,
             extra={"event": "api_key_revoked", "key_id": str(record.id),
                    "key_tenant": record.tenant, "by": by, "revoked_by": record.revoked_by,
                    "already_revoked": again})
    return record, key_hash


def parse_rate(text: str | None) -> float | None:
    """`10` or `10/s` (runs per second) as a number; None stays None."""
    if text is None:
        return None
    try:
        rate = float(text.strip().removesuffix("/s"))
    except ValueError:
        raise InvalidRequest(f"a submit rate is runs per second, like 10 or 10/s, not "
                             f"{text!r}") from None
    return rate


def set_tenant(repo: Store, name: str, *, weight: float = 1.0,
               max_queued_runs: int | None = None, max_running_nodes: int | None = None,
               submit_rate: float | None = None) -> TenantRecord:
    """Replace a tenant's weight and quotas (None: no limit); checked, then stored."""
    if not name or len(name) > 200 or "\x00" in name:
        raise InvalidRequest("a tenant name needs 1 to 200 characters")
    if not (MIN_SETTING <= weight <= MAX_WEIGHT):
        raise InvalidRequest(f"weight must be between {MIN_SETTING} and {MAX_WEIGHT:g}")
    for label, value in (("max_queued_runs", max_queued_runs),
                         ("max_running_nodes", max_running_nodes)):
        if value is not None and not 0 <= value <= INT32_MAX:
            raise InvalidRequest(f"{label} must be between 0 and {INT32_MAX}")
    if submit_rate is not None and not MIN_SETTING <= submit_rate <= MAX_RATE:
        raise InvalidRequest(f"submit_rate must be between {MIN_SETTING} and {MAX_RATE:,.0f} "
                             "runs/s")
    return repo.tenants.put_tenant(name, weight=weight, max_queued_runs=max_queued_runs,
                                   max_running_nodes=max_running_nodes, submit_rate=submit_rate)
