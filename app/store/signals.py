"""Signals to a run's wait nodes: stored first, then delivered in the same transaction.

A signal is a row of dagq.signals (idempotent by (run_id, signal_id)). The transaction
that stores it locks the run's wait nodes of that name (pending or waiting) and hands it
to the oldest waiting one; if none waits, it stays buffered and the next node to start
waiting for that name takes it (dagq.store.machine.release). Both sides lock the wait node's
row, so a signal and a node reaching its wait never miss each other, whichever commits
first. A signal no node of the run ever waits for is refused (a typo would otherwise be
kept forever). Two signals at once for one waiting node: one ends the wait, the other stays
buffered for the next wait of that name (a later node, or the same one after a retry).

A run keeps at most `max_buffered` signals no node has taken (DAGQ_MAX_BUFFERED_SIGNALS_PER_RUN):
one more is refused (TooManySignals, 409) and writes nothing. Buffering takes the run's row
lock before it counts, so two signals at once cannot both pass the count. Buffered signals
go with their run (a foreign key, ON DELETE CASCADE) when retention prunes it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from dagq.errors import Conflict, InvalidRequest, TooManySignals
from dagq.models import SignalResult
from dagq.runtime.sqlfiles import queries
from dagq.states import OPEN_RUN_STATUSES
from dagq.store.machine import Machine
from dagq.store.machine.unit import UnitOfWork
from dagq.store.machine.waits import signal_outputs
from dagq.store.runs import visible_run
from dagq.store.tx import Database, transient

log = logging.getLogger("dagq.store")


class SignalRepo:
    """Sending signals to runs."""

    def __init__(self, db: Database, machine: Machine) -> None:
        self.db, self.m = db, machine

    def send_signal(
        self, run_id: uuid.UUID, name: str, *, tenant: str | None,
        data: dict[str, Any] | None = None, signal_id: str | None = None,
        max_buffered: int | None = None,
    ) -> SignalResult:
        """Store a signal and deliver it to the oldest node of the run waiting for
        `name`, or buffer it. The same `signal_id` again changes nothing (`duplicate`);
        a finished run takes no new signal (Conflict), nor a run that already buffers
        `max_buffered` signals (TooManySignals; None: no bound). Without a `signal_id`
        one is made here, once, so a retry after a lost COMMIT finds its own row."""
        return self._send_signal(run_id, name, tenant, {} if data is None else data,
                                 signal_id or str(uuid.uuid4()), signal_id, max_buffered)

    @transient
    def _send_signal(
        self, run_id: uuid.UUID, name: str, tenant: str | None, data: dict[str, Any],
        signal_id: str, given_id: str | None, max_buffered: int | None,
    ) -> SignalResult:
        q = queries()
        with self.db.tx() as cur:
            run = visible_run(cur, run_id, tenant)
            self._check_name(cur, run_id, name)
            if run["status"] not in OPEN_RUN_STATUSES:
                if given_id is not None and (seen := self._seen(cur, run_id, name, given_id)):
                    return seen
                raise Conflict(f"run {run_id} already finished ({run['status']}); "
                               "it takes no signals")
            inserted = cur.execute(q["insert_signal"], {
                "run_id": run_id, "name": name, "signal_id": signal_id,
                "data": Jsonb(data)}).fetchone()
            if inserted is None:
                seen = self._seen(cur, run_id, name, signal_id)
                if seen is None:  # pragma: no cover - the row conflicted, so it exists
                    raise Conflict(f"signal {signal_id!r} is being sent concurrently; retry")
                return seen
            node_key = self._deliver(cur, run_id, name, signal_id, inserted["id"], data,
                                     max_buffered)
        return SignalResult(run_id=run_id, signal=name, signal_id=signal_id,
                            delivered=node_key is not None, node_key=node_key)

    def _deliver(
        self, cur: psycopg.Cursor[Any], run_id: uuid.UUID, name: str, signal_id: str,
        row_id: int, data: dict[str, Any], max_buffered: int | None,
    ) -> str | None:
        """Hand the stored signal to the oldest waiting node of its name, if any; the
        node that took it, or None (buffered)."""
        q = queries()
        # Pending ones too: a node that starts waiting meanwhile is then seen waiting
        # (this waits for its transaction) or sees this signal (its waits for ours).
        nodes = cur.execute(q["lock_signal_waiters"], {"run_id": run_id, "name": name}).fetchall()
        waiting = sorted((n for n in nodes if n["status"] == "waiting"),
                         key=lambda n: (n["started_at"], n["id"]))
        work = UnitOfWork()
        work.touch(run_id)
        event = {"signal": name, "signal_id": signal_id}
        if not waiting:
            run = cur.execute(q["lock_run"], {"run_id": run_id}).fetchone()
            if run["status"] not in OPEN_RUN_STATUSES:  # finished meanwhile: write nothing
                raise Conflict(f"run {run_id} already finished ({run['status']}); "
                               "it takes no signals")
            if max_buffered is not None:
                self._check_buffered(cur, run_id, max_buffered)
            work.event(run_id, None, "signal_received", None, {**event, "buffered": True})
            self.m.accounting.account_runs(cur, work)
            work.flush(cur)
            return None
        node = waiting[0]
        cur.execute(q["consume_signal"], {"id": row_id, "node_key": node["node_key"]})
        work.event(run_id, node["node_key"], "signal_received", None, event)
        self.m.release.end_wait(cur, work, node["id"], "succeeded",
                                outputs=signal_outputs(name, signal_id, data))
        self.m.accounting.account_runs(cur, work)
        work.flush(cur)
        return str(node["node_key"])

    @staticmethod
    def _check_buffered(cur: psycopg.Cursor[Any], run_id: uuid.UUID, limit: int) -> None:
        """Under the run's row lock (so a concurrent buffering waits, then counts ours):
        this signal, already inserted, may not take the run past `limit` buffered ones.
        Raising rolls the insert back."""
        buffered = cur.execute(queries()["count_buffered_signals"], {
            "run_id": run_id, "limit": limit + 1}).fetchone()["buffered"]
        if buffered > limit:
            raise TooManySignals(
                f"run {run_id} already keeps {limit} signals no node has taken "
                "(DAGQ_MAX_BUFFERED_SIGNALS_PER_RUN); this one is refused",
                {"run_id": str(run_id), "buffered": limit, "limit": limit})

    @staticmethod
    def _check_name(cur: psycopg.Cursor[Any], run_id: uuid.UUID, name: str) -> None:
        """A signal no node of the run waits for (now or later) would be kept forever:
        most likely a typo, so it is refused (InvalidRequest) and nothing is written."""
        names = [r["name"] for r in cur.execute(queries()["run_signal_names"],
                                                {"run_id": run_id}).fetchall()]
        if name not in names:
            waits = ", ".join(repr(n) for n in names) or "none"
            raise InvalidRequest(f"no node of run {run_id} waits for signal {name!r} "
                                 f"(its signal waits: {waits})",
                                 {"signal": name, "signals": names})

    @staticmethod
    def _seen(
        cur: psycopg.Cursor[Any], run_id: uuid.UUID, name: str, signal_id: str
    ) -> SignalResult | None:
        """The signal stored earlier under this signal_id (a retried send), if any."""
        row = cur.execute(queries()["signal_by_id"], {
            "run_id": run_id, "signal_id": signal_id}).fetchone()
        if row is None:
            return None
        if row["name"] != name:
            raise Conflict(f"signal_id {signal_id!r} was already used for signal "
                           f"{row['name']!r} of this run", {"signal": row["name"]})
        return SignalResult(run_id=run_id, signal=name, signal_id=signal_id,
                            delivered=row["consumed_by"] is not None,
                            node_key=row["consumed_by"], duplicate=True)
