"""Runs submitted from SQL (dagq.submit, migration 033): the sweeper's pass claims due
requests and turns each into its run inside one transaction with the request's deletion,
so a committed request becomes exactly one run. How a request becomes a run is the
service's (`expand`: the normal submit path on this transaction's connection)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from dagq.errors import DagqError, RateLimited
from dagq.runtime.sqlfiles import queries
from dagq.store.tx import Database, transient

# Turns a claimed request into its run on this connection (inside its transaction):
# None when written, else the error that refused it.
Expand = Callable[[psycopg.Connection[Any], dict[str, Any]], DagqError | None]
RETRY_FOR = (RateLimited,)  # refusals that pass (a quota, a rate): tried again
MAX_ATTEMPTS = 20
# A refusal's wait doubles with each attempt up to this (never below its retry_after): a
# full queue answers retry_after 1 s, and 20 tries a second apart failed a committed
# request after 20 s of backlog; doubled, the 20 tries span about 15 minutes.
MAX_RETRY_WAIT_S = 60.0


class SubmitRequestRepo:
    """dagq.submit_requests."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @transient
    def expand_due(self, expand: Expand, *, limit: int,
                   now: datetime | None = None) -> dict[str, int]:
        """Claim up to `limit` due requests and `expand` each, in one transaction:
        written ones deleted, refused ones retried later or failed. Counts by outcome."""
        q = queries()
        counts = {"submitted": 0, "submit_retried": 0, "submit_failed": 0}
        with self.db.connection(None) as conn, conn.transaction(), \
                conn.cursor(row_factory=dict_row) as cur:
            for row in cur.execute(q["claim_submit_requests"],
                                   {"limit": limit, "now": now}).fetchall():
                error = expand(conn, row)
                if error is None:
                    cur.execute(q["delete_submit_request"], {"id": row["id"]})
                    counts["submitted"] += 1
                    continue
                detail = Jsonb({"code": error.code, "message": error.message})
                if isinstance(error, RETRY_FOR) and row["attempts"] + 1 < MAX_ATTEMPTS:
                    wait = max(float(getattr(error, "retry_after", None) or 1.0),
                               min(2.0 ** row["attempts"], MAX_RETRY_WAIT_S))
                    cur.execute(q["retry_submit_request"], {
                        "id": row["id"], "error": detail,
                        "retry_at": (now or _db_now(cur)) + timedelta(seconds=wait)})
                    counts["submit_retried"] += 1
                else:
                    cur.execute(q["fail_submit_request"], {"id": row["id"], "error": detail})
                    counts["submit_failed"] += 1
        return counts

    @transient
    def prune_submit_requests(self, *, before: datetime) -> int:
        """Failed requests from before `before`; how many."""
        with self.db.tx(one_statement=True) as cur:
            return cur.execute(queries()["prune_submit_requests"], {"before": before}
                               ).fetchone()["pruned"]


def _db_now(cur: psycopg.Cursor[Any]) -> datetime:
    return cur.execute(queries()["database_now_for_submits"]).fetchone()["now"]
