"""Tenants' weights and quotas (admission against them is in dagq.store.submissions,
inside the submissions' own transaction), and the API keys that name them."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from dagq.errors import NotFound
from dagq.models import ApiKey, ApiKeyRecord, TenantRecord
from dagq.runtime.sqlfiles import queries
from dagq.store.tx import Database, transient


class TenantRepo:
    """dagq.tenants: settings, the load per tenant, the submit quotas; dagq.api_keys."""

    def __init__(self, db: Database, *, on_change: Callable[[], None]) -> None:
        """`on_change`: called after a tenant's settings changed (this process's leases
        read the tenants' caps anew: LeaseRepo.tenant_caps)."""
        self.db = db
        self.on_change = on_change

    @transient
    def put_tenant(self, name: str, *, weight: float = 1.0,
                   max_queued_runs: int | None = None, max_running_nodes: int | None = None,
                   submit_rate: float | None = None) -> TenantRecord:
        with self.db.tx(one_statement=True) as cur:
            row = cur.execute(queries()["put_tenant"], {
                "name": name, "weight": weight, "max_queued_runs": max_queued_runs,
                "max_running_nodes": max_running_nodes, "submit_rate": submit_rate,
            }).fetchone()
        self.on_change()
        return TenantRecord(**row)

    @transient
    def get_tenant(self, name: str) -> TenantRecord:
        """The tenant's settings (defaults when it has none)."""
        with self.db.tx(one_statement=True) as cur:
            row = cur.execute(queries()["get_tenant"], {"name": name}).fetchone()
        return TenantRecord(**row) if row else TenantRecord(name=name)

    @transient
    def list_tenants(self) -> list[TenantRecord]:
        with self.db.tx(one_statement=True) as cur:
            return [TenantRecord(**row) for row in cur.execute(queries()["list_tenants"])]

    @transient
    def limited_tenants(self) -> frozenset[str]:
        with self.db.tx(one_statement=True) as cur:
            return frozenset(row["name"] for row in cur.execute(queries()["limited_tenants"]))

    @transient
    def insert_api_key(self, *, tenant: str, key_hash: str, admin: bool) -> uuid.UUID:
        key_id = uuid.uuid4()
        with self.db.tx() as cur:
            cur.execute(queries()["insert_api_key"], {
                "id": key_id, "tenant": tenant, "key_hash": key_hash, "admin": admin,
            })
        return key_id

    @transient
    def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        with self.db.tx() as cur:
            row = cur.execute(queries()["api_key_by_hash"], {"key_hash": key_hash}).fetchone()
        return ApiKey(**row) if row else None

    @transient
    def list_api_keys(self, tenant: str | None, *, limit: int) -> list[ApiKeyRecord]:
        """The keys of `tenant` (None: every tenant), oldest first, revoked ones too."""
        with self.db.tx(one_statement=True) as cur:
            rows = cur.execute(queries()["list_api_keys"],
                               {"tenant": tenant, "limit": limit}).fetchall()
        return [ApiKeyRecord(**row) for row in rows]

    @transient
    def get_api_key(self, key_id: uuid.UUID, tenant: str | None) -> ApiKeyRecord:
        """A key of `tenant` (None: any), or NotFound."""
        with self.db.tx(one_statement=True) as cur:
            row = cur.execute(queries()["get_api_key"],
                              {"id": key_id, "tenant": tenant}).fetchone()
        if row is None:
            raise NotFound(f"API key {key_id} not found")
        return ApiKeyRecord(**row)

    @transient
    def revoke_api_key(self, key_id: uuid.UUID, tenant: str | None,
                       by: str) -> tuple[ApiKeyRecord, str]:
        """Mark the key revoked (once: again keeps the first revocation); the record and
        the key's hash (to drop it from caches). NotFound when it is not a key of
        `tenant` (None: any tenant)."""
        with self.db.tx(one_statement=True) as cur:
            row = cur.execute(queries()["revoke_api_key"],
                              {"id": key_id, "tenant": tenant, "by": by}).fetchone()
        if row is None:
            raise NotFound(f"API key {key_id} not found")
        key_hash = row.pop("key_hash")
        return ApiKeyRecord(**row), key_hash
