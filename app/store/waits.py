"""Open signal waits with their forms, and respond links (migration 034; docs/forms.md).

A respond link is a row of dagq.respond_links keyed by the SHA-256 of its token: the
token is returned once, to the caller that minted it, and never stored. Answering with a
link locks the link's row first, then the wait node's (as a signal locks it), then the
run's (through the machine's accounting), so two answers with one token take turns and
the second finds the link used; the answer is a signal (a row of dagq.signals) given to
that very node, in the same transaction that marks the link used.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from dagq.errors import Conflict
from dagq.models import SignalResult
from dagq.runtime.sqlfiles import queries
from dagq.store.machine import Machine
from dagq.store.machine.unit import UnitOfWork
from dagq.store.machine.waits import signal_outputs
from dagq.store.runs import visible_run
from dagq.store.tx import Database, transient


class WaitRepo:
    """dagq.respond_links, and the open waits of dagq.node_tasks."""

    def __init__(self, db: Database, machine: Machine) -> None:
        self.db, self.m = db, machine

    @transient
    def run_waits(self, run_id: uuid.UUID, tenant: str | None) -> list[dict[str, Any]]:
        """The open signal waits of a run and its descendant runs (NotFound: the run is
        unknown or another tenant's): run_id, node_key, wait_spec, started_at,
        wait_until, tenant, workflow, parent_run_id, parent_node_key."""
        with self.db.tx() as cur:
            visible_run(cur, run_id, tenant)
            return cur.execute(queries()["run_open_waits"], {"run_id": run_id}).fetchall()

    @transient
    def open_waits(self, *, tenant: str | None, assignee: str | None,
                   limit: int) -> list[dict[str, Any]]:
        """Open signal waits across runs, oldest first (as run_waits' rows)."""
        with self.db.tx(one_statement=True) as cur:
            return cur.execute(queries()["open_waits"], {
                "tenant": tenant, "assignee": assignee, "limit": limit}).fetchall()

    @transient
    def insert_links(self, links: list[dict[str, Any]], issued_to: str,
                     cap: int) -> list[datetime | None]:
        """Store respond links (hash, run_id, node_key, since, tenant, ttl_s each); their
        expiry times, in order (None: not stored, its wait already has `cap` live links)."""
        if not links:
            return []
        columns = {name: [link[key] for link in links] for name, key in (
            ("hashes", "hash"), ("run_ids", "run_id"), ("node_keys", "node_key"),
            ("sinces", "since"), ("tenants", "tenant"), ("ttls", "ttl_s"))}
        with self.db.tx(one_statement=True) as cur:
            rows = cur.execute(queries()["insert_respond_links"], {
                **columns, "issued_to": issued_to, "cap": cap}).fetchall()
        expiry = {bytes(row["token_hash"]): row["expires_at"] for row in rows}
        return [expiry.get(link["hash"]) for link in links]

    @transient
    def signal_forms(self, run_id: uuid.UUID, name: str,
                     tenant: str | None) -> list[dict[str, Any]]:
        """The forms of the run's waits for `name`: node_key, form (none for a run that
        is not visible to `tenant`)."""
        with self.db.tx(one_statement=True) as cur:
            return cur.execute(queries()["signal_forms"], {
                "run_id": run_id, "name": name, "tenant": tenant}).fetchall()

    @transient
    def respond_link(self, token_hash: bytes) -> dict[str, Any] | None:
        """A link with its wait and run (see the query), or None: no such token."""
        with self.db.tx(one_statement=True) as cur:
            return cur.execute(queries()["respond_link"], {"hash": token_hash}).fetchone()

    @transient
    def respond(self, token_hash: bytes, check: Any, data: dict[str, Any]) -> SignalResult:
        """Answer the link's wait with `data`, once. `check(link)` (the link as
        respond_link reads it, under its lock) raises when the link may not answer;
        nothing is written then."""
        q = queries()
        with self.db.tx() as cur:
            if cur.execute(q["lock_respond_link"], {"hash": token_hash}).fetchone() is None:
                check(None)
            link = cur.execute(q["respond_link"], {"hash": token_hash}).fetchone()
            node = cur.execute(q["lock_wait_node"], {
                "run_id": link["run_id"], "node_key": link["node_key"]}).fetchone()
            check({**link, "node_status": node and node["status"],
                   "started_at": node and node["started_at"]})
            name = link["wait_spec"]["signal"]
            signal_id = "respond:" + token_hash.hex()[:32]
            inserted = cur.execute(q["insert_signal"], {
                "run_id": link["run_id"], "name": name, "signal_id": signal_id,
                "data": Jsonb(data)}).fetchone()
            if inserted is None:  # pragma: no cover - the link's lock makes it unique
                raise Conflict("this link was just used")
            cur.execute(q["use_respond_link"], {"hash": token_hash})
            cur.execute(q["consume_signal"], {"id": inserted["id"],
                                              "node_key": link["node_key"]})
            work = UnitOfWork()
            work.touch(link["run_id"])
            work.event(link["run_id"], link["node_key"], "signal_received", None, {
                "signal": name, "signal_id": signal_id, "via": "respond_link",
                "issued_to": link["issued_to"]})
            self.m.release.end_wait(cur, work, node["id"], "succeeded",
                                    outputs=signal_outputs(name, signal_id, data))
            self.m.accounting.account_runs(cur, work)
            work.flush(cur)
        return SignalResult(run_id=link["run_id"], signal=name, signal_id=signal_id,
                            delivered=True, node_key=link["node_key"])
