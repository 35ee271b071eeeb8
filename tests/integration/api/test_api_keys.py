"""GET /v1/keys and DELETE /v1/keys/{id} (issue 34): listing never shows a key or its
hash and is tenant-scoped; revoking needs an admin key (another tenant's key is a 404 for
a non-admin, its own tenant's a 403), is idempotent, is stored (revoked_at, revoked_by)
and logged, and the revoked key gets a 401 at once, even if it was just cached.
GET /v1/runs?id_prefix= (tenant-scoped) and the plan of its statement."""

from __future__ import annotations

import logging
import uuid

import pytest

from dagq.runtime.sqlfiles import queries
from tests.harness.api import ECHO_FLOW, Api, assert_error
from tests.harness.plans import generic_plan

FIELDS = {"id", "tenant", "admin", "created_at", "revoked_at", "revoked_by"}


def key_id(sql, tenant: str, admin: bool = False) -> str:
    return str(sql.execute("SELECT id FROM dagq.api_keys WHERE tenant = %s AND admin = %s",
                           (tenant, admin)).fetchone()["id"])


def test_keys_are_listed_without_the_key_and_by_tenant(api: Api, sql) -> None:
    every = api.client.get("/v1/keys", headers=api.admin).json()["keys"]
    assert sorted(k["tenant"] for k in every) == ["acme", "acme", "globex"]
    assert all(set(k) == FIELDS for k in every)  # never the key, never its hash
    only = api.client.get("/v1/keys", params={"tenant": "globex"}, headers=api.admin).json()
    assert [k["tenant"] for k in only["keys"]] == ["globex"]
    # A tenant's key sees its own tenant's keys, whatever ?tenant= says.
    mine = api.client.get("/v1/keys", params={"tenant": "acme"}, headers=api.globex).json()
    assert [k["tenant"] for k in mine["keys"]] == ["globex"]
    assert_error(api.client.get("/v1/keys", params={"tenant": ""}, headers=api.admin), 422)
    assert api.client.get("/v1/keys").status_code == 401


def test_revoking_needs_an_admin_and_hides_other_tenants_keys(api: Api, sql) -> None:
    acme, globex = key_id(sql, "acme"), key_id(sql, "globex")
    assert_error(api.client.delete(f"/v1/keys/{globex}", headers=api.acme), 404, "not_found")
    assert_error(api.client.delete(f"/v1/keys/{acme}", headers=api.acme), 403, "forbidden")
    assert_error(api.client.delete(f"/v1/keys/{uuid.uuid4()}", headers=api.admin), 404)
    assert_error(api.client.delete("/v1/keys/nope", headers=api.admin), 404)
    assert sql.execute("SELECT count(*) AS n FROM dagq.api_keys WHERE revoked_at IS NOT NULL"
                       ).fetchone()["n"] == 0  # none of those wrote anything


def test_a_revoked_key_is_refused_at_once_and_the_revocation_is_recorded(
        api: Api, sql, caplog: pytest.LogCaptureFixture) -> None:
    acme = key_id(sql, "acme")
    assert api.client.get("/v1/runs", headers=api.acme).status_code == 200  # now cached
    admin_id = key_id(sql, "acme", admin=True)
    with caplog.at_level(logging.INFO, logger="dagq.audit"):
        revoked = api.client.delete(f"/v1/keys/{acme}", headers=api.admin)
    assert revoked.status_code == 200, revoked.text
    body = revoked.json()
    assert body["id"] == acme and body["revoked_at"]
    assert body["revoked_by"] == f"key {admin_id} (tenant acme)"
    assert f"api_key_revoked key_id={acme}" in caplog.text and admin_id in caplog.text
    # The cached key is refused on the very next request (this process forgot it).
    assert_error(api.client.get("/v1/runs", headers=api.acme), 401, "unauthorized")
    again = api.client.delete(f"/v1/keys/{acme}", headers=api.admin)
    assert again.status_code == 200 and again.json() == body  # idempotent: the first stays
    row = sql.execute("SELECT revoked_at, revoked_by FROM dagq.api_keys WHERE id = %s",
                      (acme,)).fetchone()
    assert row["revoked_by"] == body["revoked_by"] and row["revoked_at"] is not None
    listed = api.client.get("/v1/keys", headers=api.admin).json()["keys"]
    assert [k["revoked_by"] for k in listed if k["id"] == acme] == [body["revoked_by"]]


def test_a_key_revoked_elsewhere_is_refused_within_the_cache_ttl(api: Api, sql) -> None:
    """Another process (or `dagq keys revoke`) revoked it: this process's cache may serve
    it until its entry is KEY_CACHE_TTL_S old, no longer (here the TTL is moved through
    data: the entry is made older than it)."""
    assert api.client.get("/v1/runs", headers=api.acme).status_code == 200  # cached
    sql.execute("UPDATE dagq.api_keys SET revoked_at = now(), revoked_by = 'cli' "
                "WHERE id = %s", (key_id(sql, "acme"),))
    assert api.client.get("/v1/runs", headers=api.acme).status_code == 200  # (cache)
    cache = api.app.state.keys
    cache._found = {h: (at - cache.ttl_s, key) for h, (at, key) in cache._found.items()}
    assert_error(api.client.get("/v1/runs", headers=api.acme), 401)


def submit(api: Api, headers) -> str:
    return api.submit(headers, workflow=ECHO_FLOW, inputs={})["run_id"]


def test_runs_by_id_prefix(api: Api) -> None:
    mine = submit(api, api.acme)
    other = submit(api, api.globex)

    def found(prefix: str, headers=api.acme, **params) -> list[str]:
        reply = api.client.get("/v1/runs", params={"id_prefix": prefix, **params},
                               headers=headers)
        assert reply.status_code == 200, reply.text
        assert reply.json()["next_cursor"] is None
        return [r["run_id"] for r in reply.json()["runs"]]

    assert found(mine[:8]) == [mine]
    assert found(mine[:13].upper()) == [mine]  # dashes and case do not matter
    assert found(mine.replace("-", "")) == [mine]
    assert found(other[:8]) == []  # another tenant's run is not found
    assert found(other[:8], api.admin) == [other]
    assert found(other[:8], api.admin, tenant="acme") == []
    for bad in ("abc", "zzzz", "a" * 40):
        assert_error(api.client.get("/v1/runs", params={"id_prefix": bad},
                                    headers=api.acme), 422)
    mixed = api.client.get("/v1/runs", params={"id_prefix": mine[:8], "status": "queued"},
                           headers=api.acme)
    assert "cannot be combined with status" in assert_error(mixed, 422)["message"]


def test_the_prefix_lookup_is_a_range_scan_of_the_primary_key(sql) -> None:
    sql.execute("""
        INSERT INTO dagq.runs (id, tenant, workflow, spec, fingerprint, nodes_total,
                               nodes_remaining, status, finished_at)
        SELECT gen_random_uuid(), 't', 'bulk', '{}', 'f', 1, 0, 'succeeded', now()
        FROM generate_series(1, 20000)
    """)
    sql.execute("ANALYZE dagq.runs")
    custom = sql.execute("EXPLAIN " + queries()["runs_by_id_prefix"], {
        "low": "abcd0000-0000-0000-0000-000000000000",
        "high": "abcdffff-ffff-ffff-ffff-ffffffffffff", "tenant": None, "limit": 11}).fetchall()
    generic = generic_plan(sql, queries()["runs_by_id_prefix"])  # PostgreSQL 15 too
    for rows in (custom, generic):
        plan = "\n".join(r["QUERY PLAN"] for r in rows)
        assert "Seq Scan" not in plan and "runs_pkey" in plan, plan
