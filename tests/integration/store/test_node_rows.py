"""Node rows without a foreign key (migration 028): deleting runs still deletes their
nodes, in the same statement, however the runs are deleted."""

from __future__ import annotations

import psycopg

from dagq.store import Store
from tests.harness.specs import diamond


def test_deleting_runs_deletes_their_nodes_and_only_theirs(repo: Store, db_url: str) -> None:
    doomed = [repo.submissions.submit_run(tenant="t", spec=diamond(), inputs={})
              for _ in range(3)]
    kept = repo.submissions.submit_run(tenant="t", spec=diamond(), inputs={})
    with psycopg.connect(db_url, autocommit=True) as sql:  # as an operator would, in psql
        sql.execute("DELETE FROM dagq.runs WHERE id = ANY (%s)", ([r.run_id for r in doomed],))
        left = sql.execute("SELECT run_id, count(*) FROM dagq.node_tasks GROUP BY run_id"
                           ).fetchall()
    assert left == [(kept.run_id, 4)]


def test_node_tasks_has_no_foreign_key_to_check_per_insert(db_url: str) -> None:
    # The key's check locked the run row FOR KEY SHARE for every node written.
    with psycopg.connect(db_url, autocommit=True) as sql:
        keys = sql.execute("SELECT conname FROM pg_constraint WHERE conrelid = "
                           "'dagq.node_tasks'::regclass AND contype = 'f'").fetchall()
    assert keys == []
