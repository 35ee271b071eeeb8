"""Tenants' weights and quotas (admission against them is in submit_many, inside the
submissions' own transaction)."""

from __future__ import annotations

from dagq.models import TenantRecord
from dagq.runtime.sqlfiles import queries
from dagq.store.core import StoreCore, transient


class TenantStore(StoreCore):
    """dagq.tenants: settings, the load per tenant, the submit quotas."""

    @transient
    def put_tenant(self, name: str, *, weight: float = 1.0,
                   max_queued_runs: int | None = None, max_running_nodes: int | None = None,
                   submit_rate: float | None = None) -> TenantRecord:
        with self._tx(one_statement=True) as cur:
            row = cur.execute(queries()["put_tenant"], {
                "name": name, "weight": weight, "max_queued_runs": max_queued_runs,
                "max_running_nodes": max_running_nodes, "submit_rate": submit_rate,
            }).fetchone()
        caps = self.__dict__.get("_caps_cache")  # this process's leases: read caps anew
        if caps is not None:
            caps.forget()
        return TenantRecord(**row)

    @transient
    def get_tenant(self, name: str) -> TenantRecord:
        """The tenant's settings (defaults when it has none)."""
        with self._tx(one_statement=True) as cur:
            row = cur.execute(queries()["get_tenant"], {"name": name}).fetchone()
        return TenantRecord(**row) if row else TenantRecord(name=name)

    @transient
    def list_tenants(self) -> list[TenantRecord]:
        with self._tx(one_statement=True) as cur:
            return [TenantRecord(**row) for row in cur.execute(queries()["list_tenants"])]

    @transient
    def limited_tenants(self) -> frozenset[str]:
        with self._tx(one_statement=True) as cur:
            return frozenset(row["name"] for row in cur.execute(queries()["limited_tenants"]))
