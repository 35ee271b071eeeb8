"""The events store (dagq.store.triggers): reading an event back goes through indexes."""

from __future__ import annotations

from dagq.runtime.sqlfiles import queries
from dagq.store import Store
from dagq.store.triggers import _as_uuid
from tests.harness.plans import scans_of


def test_an_event_is_read_by_its_id_or_event_id_through_indexes(repo: Store, sql) -> None:
    """GET /v1/events/{id}: the lookup by dagq's id or the tenant's event_id used no index
    (`id::text = ...` compared every row's id as text): a scan of every event ever
    stored on each read. Read with sequential scans disabled, so any index would be
    taken; the scan shows that none applies."""
    sql.execute("INSERT INTO dagq.events (id, tenant, event_id, name, payload, fingerprint) "
                "SELECT gen_random_uuid(), 'acme', 'e-' || i, 'x', '{}', 'f' "
                "FROM generate_series(1, 2000) AS i")
    sql.execute("ANALYZE dagq.events")
    wanted = sql.execute("SELECT id FROM dagq.events WHERE event_id = 'e-7'").fetchone()["id"]
    for key, tenant in ((str(wanted), "acme"), (str(wanted), None), ("e-7", "acme")):
        with sql.transaction(force_rollback=True):
            sql.execute("SET LOCAL enable_seqscan = off")
            [row] = sql.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + queries()["event_by_id"],
                                {"id": key, "id_uuid": _as_uuid(key), "tenant": tenant}).fetchall()
        plan = row["QUERY PLAN"][0]["Plan"]
        reads = [scan["Node Type"] for scan in scans_of(plan, "events")]
        assert "Seq Scan" not in reads, (key, tenant, reads)
        assert plan["Actual Rows"] == 1
    assert repo.triggers.get_event(str(wanted), "acme").event_id == "e-7"
    assert repo.triggers.get_event("e-7", "acme").id == wanted
    assert repo.triggers.get_event(str(wanted), None).event_id == "e-7"
    assert _as_uuid(str(wanted).upper()) is None  # an event_id, as `id::text` saw it

