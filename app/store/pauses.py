"""Pauses of a queue, a workflow (every version), a run or a tenant (migration 039): who
paused what, when and why. The lease itself skips paused nodes (sql/queries/leases.sql,
dagq.node_paused); here pauses are made, ended (waking the workers), listed, and the
pauses that refuse submits read (cached briefly for the submit path)."""

from __future__ import annotations

import threading
import time
import uuid

from dagq.errors import Conflict, NotFound
from dagq.models import PauseRecord
from dagq.runtime.sqlfiles import queries
from dagq.store.tx import QUEUED_CHANNEL, Database, notify_after_commit, transient


class RefusingPauses:
    """The active pauses with refuse_submits, as (kind, name), read at most every `ttl_s`
    seconds: the submit path must not pay a statement per submit. A pause made through
    this process's Store is seen at once (`forget`); one made elsewhere within `ttl_s`
    (its runs are then accepted and wait in the pause, never leased)."""

    def __init__(self, ttl_s: float = 1.0) -> None:
        self.ttl_s = ttl_s
        self._until = 0.0
        self._pauses: frozenset[tuple[str, str]] = frozenset()
        self._lock = threading.Lock()

    def get(self, db: Database) -> frozenset[tuple[str, str]]:
        with self._lock:
            if time.monotonic() < self._until:
                return self._pauses
        with db.tx(one_statement=True) as cur:
            found = frozenset((r["kind"], r["name"]) for r in cur.execute(
                queries()["refusing_pauses"]).fetchall())
        with self._lock:
            self._pauses, self._until = found, time.monotonic() + self.ttl_s
        return found

    def forget(self) -> None:
        with self._lock:
            self._until = 0.0


class PauseRepo:
    """dagq.pauses."""

    def __init__(self, db: Database, refusing: RefusingPauses) -> None:
        self.db = db
        self.refusing_cache = refusing

    @transient
    def add_pause(self, *, kind: str, name: str, by: str, tenant: str | None = None,
                  scope: str | None = None, reason: str | None = None,
                  refuse_submits: bool = False) -> tuple[PauseRecord, bool]:
        """Pause one thing; returns the pause and whether it is new (False: that thing
        was paused already, and that pause is returned unchanged). `scope` non-null: the
        caller may pause only that tenant's runs (a run of another tenant: NotFound).
        `tenant`: recorded as the owner (a run's is read here)."""
        if kind == "run":  # named by its canonical id: the lease compares text
            name = str(_run_id(name))
        for _ in range(3):  # the active pause found by the insert resumed meanwhile: again
            found = self._add(kind, name, by, tenant, scope, reason, refuse_submits)
            if found is not None:
                self.refusing_cache.forget()
                return found
        raise Conflict(f"{kind} {name} is being paused and resumed concurrently; try again")

    def _add(self, kind: str, name: str, by: str, tenant: str | None, scope: str | None,
             reason: str | None, refuse_submits: bool) -> tuple[PauseRecord, bool] | None:
        q = queries()
        with self.db.tx() as cur:
            if kind == "run":
                owner = cur.execute(q["run_owner"], {"id": name, "tenant": scope}).fetchone()
                if owner is None:
                    raise NotFound(f"run {name} not found")
                tenant = owner["tenant"]
            row = cur.execute(q["insert_pause"], {
                "id": uuid.uuid4(), "kind": kind, "name": name, "tenant": tenant,
                "reason": reason, "refuse_submits": refuse_submits, "created_by": by,
            }).fetchone()
            if row is not None:
                return PauseRecord(**row), True
            row = cur.execute(q["active_pause"], {"kind": kind, "name": name,
                                                  "tenant": None}).fetchone()
        return None if row is None else (PauseRecord(**row), False)

    @transient
    def end_pause(self, *, by: str, pause_id: uuid.UUID | None = None,
               kind: str | None = None, name: str | None = None,
               scope: str | None = None) -> PauseRecord:
        """End an active pause, by id or by kind and name, and wake the workers of what
        it held (NotFound: no such active pause, or not `scope`'s to end)."""
        with self.db.tx() as cur:
            row = cur.execute(queries()["resume_pause"], {
                "id": pause_id, "kind": kind, "name": name, "tenant": scope,
                "by": by}).fetchone()
            if row is None:
                what = str(pause_id) if pause_id else f"{kind} {name}"
                raise NotFound(f"no active pause {what}")
            # A queue's workers, or every worker (a workflow, run or tenant spans queues).
            notify_after_commit(QUEUED_CHANNEL, row["name"] if row["kind"] == "queue" else "")
        self.refusing_cache.forget()
        return PauseRecord(**row)

    @transient
    def list_pauses(self, tenant: str | None, *, history: bool = False,
                    limit: int = 100) -> list[PauseRecord]:
        """Active pauses (`history`: ended ones too), newest first; `tenant`: its only."""
        with self.db.tx(one_statement=True) as cur:
            rows = cur.execute(queries()["list_pauses"], {
                "tenant": tenant, "history": history, "limit": limit}).fetchall()
        return [PauseRecord(**row) for row in rows]

    def refusing(self) -> frozenset[tuple[str, str]]:
        """(kind, name) of the active pauses that refuse submits (cached, see
        RefusingPauses)."""
        return self.refusing_cache.get(self.db)

    @transient
    def paused_among(self, wanted: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Which of these (kind, name) are paused now."""
        with self.db.tx(one_statement=True) as cur:
            return [(r["kind"], r["name"]) for r in cur.execute(
                queries()["active_pauses_among"], {"kinds": [k for k, _ in wanted],
                                                   "names": [n for _, n in wanted]})]

    @transient
    def active_by_kind(self) -> dict[str, int]:
        with self.db.tx(one_statement=True) as cur:
            return {r["kind"]: r["n"] for r in cur.execute(
                queries()["active_pauses_by_kind"]).fetchall()}


def _run_id(name: str) -> uuid.UUID:
    try:
        return uuid.UUID(name)
    except ValueError:
        raise NotFound(f"run {name} not found") from None
