"""Stored streamed output is bounded (issue 27): a node's earlier attempts keep only a
tail once a newer attempt streams, a run and a tenant hold at most their cap (the chunks
over it refused, the executor's next stream() raising StreamTooLarge), and the counts
behind the caps stay right whatever deletes chunks (trim, requeue, retention)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.types.json import Jsonb

from dagq.config import Settings
from dagq.store import Store
from dagq.store.streams import StreamCaps, StreamChunk
from dagq.workers.streams import StreamTooLarge, StreamWriter, caps_of
from tests.harness.specs import spec

ONE = {"llm": {"executor": "builtin.noop", "max_attempts": 3}}
KB = "x" * 1000  # a 1,000-byte chunk


def start(repo: Store, tenant: str = "acme") -> tuple[uuid.UUID, object]:
    run_id = repo.submissions.submit_run(tenant=tenant, spec=spec(ONE, name="one")).run_id
    return run_id, lease(repo, run_id)


def lease(repo: Store, run_id: uuid.UUID):
    [node] = [n for n in repo.leases.lease(worker="w", queue="default", limit=10, ttl_s=30)
              if n.run_id == run_id]
    return node


def chunks(node, texts: list[str], first_seq: int = 1) -> list[StreamChunk]:
    return [StreamChunk(node.id, node.version, node.run_id, first_seq + i, text)
            for i, text in enumerate(texts)]


def retry(repo: Store, sql: psycopg.Connection, node) -> object:
    assert repo.leases.fail(node.id, node.version, {"type": "Boom", "message": "x"}) == "retry"
    sql.execute("UPDATE dagq.node_tasks SET available_at = now() WHERE id = %s", (node.id,))
    return lease(repo, node.run_id)


def stored(sql: psycopg.Connection, run_id: uuid.UUID | None = None) -> int:
    """The bytes dagq.node_stream really holds (of one run, or all)."""
    return sql.execute(
        "SELECT coalesce(sum(dagq.stream_chunk_bytes(text, data)), 0) AS n "
        "FROM dagq.node_stream WHERE %(run)s::uuid IS NULL OR run_id = %(run)s",
        {"run": run_id}).fetchone()["n"]


def counted(sql: psycopg.Connection, run_id: uuid.UUID) -> int:
    row = sql.execute("SELECT bytes FROM dagq.stream_bytes_by_run WHERE run_id = %s",
                      (run_id,)).fetchone()
    return row["bytes"] if row else 0


def tenant_counted(sql: psycopg.Connection, tenant: str) -> int:
    return sql.execute("SELECT coalesce(sum(bytes), 0) AS n FROM dagq.stream_bytes_by_tenant "
                       "WHERE tenant = %s", (tenant,)).fetchone()["n"]


def test_a_retried_node_keeps_its_current_attempt_and_a_tail_of_earlier_ones(
        repo: Store, sql) -> None:
    """The issue's case: 3 attempts streaming each keep 3 full texts; now the earlier
    ones keep their last chunks of at most the tail's bytes."""
    caps = StreamCaps(tail_bytes=2500)
    run_id, first = start(repo)
    assert repo.streams.write_stream(chunks(first, [f"{i:03}" + KB[3:] for i in range(50)]),
                                     caps).written == 50
    second = retry(repo, sql, first)
    repo.streams.write_stream(chunks(second, [KB] * 30), caps)
    third = retry(repo, sql, second)
    repo.streams.write_stream(chunks(third, [KB] * 40), caps)
    one = repo.streams.node_stream(run_id, "llm", 1, "acme")
    assert one["chunks"] == 2 and one["text"].startswith("048") and one["complete"]
    assert repo.streams.node_stream(run_id, "llm", 2, "acme")["chunks"] == 2
    assert repo.streams.node_stream(run_id, "llm", 3, "acme")["chunks"] == 40  # the current one
    assert stored(sql) == 2000 + 2000 + 40_000
    assert counted(sql, run_id) == stored(sql, run_id) == tenant_counted(sql, "acme")
    # A later flush of the current attempt trims nothing more.
    repo.streams.write_stream(chunks(third, [KB], first_seq=41), caps)
    assert repo.streams.node_stream(run_id, "llm", 2, "acme")["chunks"] == 2


def test_the_writer_refuses_chunks_over_the_runs_cap_and_the_executor_sees_it(
        repo: Store, sql) -> None:
    run_id, node = start(repo)
    other_run, other = start(repo)
    writer = StreamWriter(repo, caps=StreamCaps(run_bytes=5000))  # not started: writes now
    key = (node.id, node.version)
    for _ in range(5):
        writer.append(key, run_id, KB)  # 5,000 bytes: exactly the cap
    writer.append(key, run_id, "over")  # refused in Postgres ...
    with pytest.raises(StreamTooLarge, match="DAGQ_MAX_STREAM_BYTES_PER_RUN"):
        writer.append(key, run_id, "more")  # ... and the executor's next call raises
    assert repo.streams.node_stream(run_id, "llm", None, "acme")["text"] == KB * 5
    assert stored(sql, run_id) == counted(sql, run_id) == 5000
    refused = sql.execute("SELECT value FROM dagq.counters "
                          "WHERE name = 'refused_stream_chunks'").fetchone()["value"]
    assert refused == 1
    writer.append((other.id, other.version), other_run, KB)  # another run is not held up
    assert stored(sql, other_run) == 1000


def test_a_tenant_over_its_cap_is_refused_until_retention_frees_room(
        repo: Store, sql) -> None:
    caps = StreamCaps(tenant_bytes=3000)
    first_run, first = start(repo)
    second_run, second = start(repo)
    globex_run, globex = start(repo, tenant="globex")
    assert repo.streams.write_stream(chunks(first, [KB, KB]), caps).written == 2
    result = repo.streams.write_stream(
        chunks(second, [KB, KB]) + chunks(globex, [KB, KB, KB]), caps)
    assert result.written == 4  # one of `second`'s, and all of globex's
    assert result.refused == {(second.id, second.version): "tenant"}
    assert tenant_counted(sql, "acme") == stored(sql, first_run) + stored(sql, second_run)
    assert tenant_counted(sql, "acme") == 3000 and tenant_counted(sql, "globex") == 3000
    repo.runs.cancel_run(first_run, "acme")
    sql.execute("UPDATE dagq.runs SET finished_at = now() - interval '10 days' WHERE id = %s",
                (first_run,))
    assert repo.maintenance.prune(retention_s=86400) == 1
    assert tenant_counted(sql, "acme") == 1000
    assert sql.execute("SELECT count(*) AS n FROM dagq.stream_bytes_by_run WHERE run_id = %s",
                       (first_run,)).fetchone()["n"] == 0
    assert repo.streams.write_stream(chunks(second, [KB], first_seq=3), caps).written == 1


def test_the_counts_follow_a_requeue_and_the_one_argument_function(repo: Store, sql) -> None:
    run_id, node = start(repo)
    repo.streams.append_stream(chunks(node, [KB, KB]))
    repo.leases.fail(node.id, node.version, {"type": "Boom", "message": "x"}, retryable=False)
    sql.execute("SELECT dagq.requeue_node(%s, 'llm')", (run_id,))  # voids the attempt
    assert stored(sql, run_id) == counted(sql, run_id) == tenant_counted(sql, "acme") == 0
    again = lease(repo, run_id)
    # A worker older than migration 023 calls the one-argument version: still counted.
    row = sql.execute("SELECT * FROM dagq.append_stream(%s)", (Jsonb([
        {"ord": 0, "node_id": again.id, "version": again.version, "run_id": str(run_id),
         "seq": 1, "text": "old worker", "data": None}]),)).fetchone()
    assert (row["written"], row["stale"]) == (1, 0)
    assert counted(sql, run_id) == tenant_counted(sql, "acme") == len("old worker")


def test_the_caps_come_from_the_settings() -> None:
    caps = caps_of(Settings(_env_file=None, max_stream_bytes_per_run=0,  # type: ignore[call-arg]
                            max_stream_bytes_per_tenant=10, stream_tail_bytes=5))
    assert caps == StreamCaps(run_bytes=None, tenant_bytes=10, tail_bytes=5)
    defaults = caps_of(Settings(_env_file=None))  # type: ignore[call-arg]
    assert defaults == StreamCaps(64 * 1024 * 1024, 8 * 1024**3, 64 * 1024)


def test_refused_chunks_are_a_metric(db_url: str) -> None:
    from tests.harness.api import Api, samples

    with Api(db_url) as api:
        run_id, node = start(api.repo)
        result = api.repo.streams.write_stream(
            chunks(node, [KB, KB, KB]), StreamCaps(run_bytes=1500))
        assert (result.written, result.refused) == (1, {(node.id, node.version): "run"})
        metrics = samples(api.client.get("/metrics").text)
    assert metrics[("dagq_refused_stream_chunks_total", ())] == 2
