"""Tenants' weights and quotas (admission against them is in dagq.store.submissions,
inside the submissions' own transaction), and the API keys that name them."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from dagq.models import ApiKey, TenantRecord
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
