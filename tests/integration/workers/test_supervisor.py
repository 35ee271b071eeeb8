"""The supervisor's heartbeat answers only for the attempts held when it asked."""

from __future__ import annotations

from dagq.store import Store
from dagq.workers.broker import PostgresBroker
from dagq.workers.leases import lease_key
from dagq.workers.supervisor import Supervisor
from tests.harness.specs import spec


def test_a_heartbeat_answer_does_not_lose_an_attempt_leased_meanwhile(
    repo: Store, sql
) -> None:
    """The heartbeat asks about node n (attempt v1, just reclaimed, so reported gone);
    while it runs, this worker leases n again (v2). Losing n by node id would stop v2,
    which would stay running in the database, unheartbeated, until it expired."""
    broker = PostgresBroker(repo, worker_id="w1", lease_ttl_s=30, max_output_bytes=1000)
    repo.submissions.submit_run(tenant="t", spec=spec({"n": {"executor": "builtin.noop"}}))
    [v1] = repo.leases.lease(worker="w1", queue="default", limit=1, ttl_s=30)
    broker.book.add(v1, "default")
    sql.execute("UPDATE dagq.node_tasks SET lease_expires_at = now() - interval '1 minute' "
                "WHERE id = %s", (v1.id,))
    assert repo.maintenance.reclaim_expired()["retried"] == 1
    sql.execute("UPDATE dagq.node_tasks SET available_at = now() WHERE id = %s", (v1.id,))
    leased_meanwhile = []
    real_heartbeat = repo.leases.heartbeat

    def heartbeat_racing_a_lease(**kwargs):
        result = real_heartbeat(**kwargs)  # n is gone: v1 was taken back
        [v2] = repo.leases.lease(worker="w1", queue="default", limit=1, ttl_s=30)
        broker.book.add(v2, "default")
        leased_meanwhile.append(v2)
        return result

    broker.repo.leases.heartbeat = heartbeat_racing_a_lease
    Supervisor(broker, broker.book, heartbeat_s=1).beat()

    [v2] = leased_meanwhile
    assert v2.id == v1.id and v2.version > v1.version
    old, new = broker.book.get(lease_key(v1)), broker.book.get(lease_key(v2))
    assert old is not None and old.lost  # the answer was about v1: lost
    assert new is not None and not new.lost and new.interrupt is None
    assert broker.book.begin(lease_key(v2), timeout_s=60) is None  # v2 runs unhindered
    del broker.repo.leases.heartbeat
    Supervisor(broker, broker.book, heartbeat_s=1).beat()  # the next heartbeat asks about v2: held
    assert not new.lost and new.interrupt is None
