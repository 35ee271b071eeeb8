"""Reading runs and their events; cancelling and retrying a run."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg

from dagq.errors import Conflict, NotFound
from dagq.models import (
    ChildRun,
    NodeView,
    RunEvent,
    RunView,
)
from dagq.runtime.sqlfiles import queries
from dagq.spec.metadata import json_path
from dagq.states import OPEN_RUN_STATUSES, RETRYABLE_RUN_STATUSES
from dagq.store.machine import Machine
from dagq.store.machine.accounting import cancel_open_run
from dagq.store.machine.map_retry import MapResume
from dagq.store.machine.release import restart_status
from dagq.store.machine.unit import UnitOfWork
from dagq.store.tx import Database, transient

log = logging.getLogger("dagq.store")



def _run_view(row: dict[str, Any], nodes: list[dict[str, Any]] | None,
              children: list[dict[str, Any]] | None = None) -> RunView:
    node_views = None
    if nodes is not None:
        node_views = [_node_view(n) for n in nodes]
    return RunView(
        run_id=row["id"], tenant=row["tenant"], workflow=row["workflow"],
        workflow_version=row["workflow_version"], event_key=row["event_key"],
        status=row["status"], priority=row["priority"], fail_fast=row["fail_fast"],
        inputs=row["inputs"], outputs=row["outputs"], error=row["error"],
        nodes_total=row["nodes_total"], nodes_remaining=row["nodes_remaining"],
        deadline_at=row["deadline_at"], created_at=row["created_at"],
        started_at=row["started_at"], finished_at=row["finished_at"], nodes=node_views,
        rerun_of=row.get("rerun_of"),
        concurrency_key=row.get("concurrency_key"),
        concurrency_waiting=row.get("concurrency_waiting", False),
        parent_run_id=row.get("parent_run_id"), parent_node_key=row.get("parent_node_key"),
        children=[ChildRun(**c) for c in children] if children is not None else None,
        metadata=row.get("metadata"),
    )


def _summary(row: dict[str, Any]) -> RunView:
    """A listed run: its summary columns only; `error` is its head only (runs.sql): the
    node, type and start of the message."""
    return _run_view({**row, "fail_fast": True, "inputs": None, "outputs": None,
                      "deadline_at": None}, None)


def _node_view(n: dict[str, Any]) -> NodeView:
    duration = None
    if n["started_at"] and n["finished_at"]:
        duration = round((n["finished_at"] - n["started_at"]).total_seconds() * 1000, 3)
    return NodeView(
        key=n["node_key"], executor=n["executor"], status=n["status"], attempts=n["attempts"],
        max_attempts=n["max_attempts"], depends_on=n["depends_on"], queued_at=n["queued_at"],
        started_at=n["started_at"], finished_at=n["finished_at"], duration_ms=duration,
        outputs=n["outputs"], error=n["error"], lease_owner=n["lease_owner"],
        lease_expires_at=n["lease_expires_at"], items=n["items"] or None,
        items_done=(n["map_items"] - (n["map_remaining"] or 0)) if n["map_items"] else None,
        items_failed=n["map_failed"] if n["map_items"] else None,
        items_succeeded=n["items_succeeded"] if n["items"] else None,
        wait=n["wait_spec"], wait_until=n["wait_until"], queue=n["queue"],
        available_at=n["available_at"],
    )


def visible_run(
    cur: psycopg.Cursor[Any], run_id: uuid.UUID, tenant: str | None
) -> dict[str, Any]:
    """The run's row (locked by no one), or NotFound: unknown, or another tenant's."""
    row = cur.execute(queries()["get_run"], {"run_id": run_id}).fetchone()
    if row is None or (tenant is not None and row["tenant"] != tenant):
        raise NotFound(f"run {run_id} not found")
    return row


class RunRepo:
    """Run reads, cancel and retry."""

    def __init__(self, db: Database, machine: Machine) -> None:
        self.db, self.m = db, machine

    @transient
    def cancel_run(self, run_id: uuid.UUID, tenant: str | None) -> str:
        """Cancel what has not started; running nodes stop as soon as their workers get
        the notification sent after commit (at their next heartbeat if it is lost)."""
        with self.db.tx() as cur:
            run = visible_run(cur, run_id, tenant)
            if run["status"] not in OPEN_RUN_STATUSES:
                if run["status"] == "cancelled":
                    return "cancelled"
                raise Conflict(f"run {run_id} already finished ({run['status']})")
            cancel_open_run(cur, run_id, finished=self.m.accounting.cancelled_run_finished)
        return "cancelled"

    @transient
    def retry_run(self, run_id: uuid.UUID, tenant: str | None, *,
                  failed_items: bool = False) -> str:
        """Requeue a finished run's failed, cancelled and skipped nodes (attempts reset).
        `failed_items`: a map node whose dependencies all succeeded keeps its succeeded
        items and runs only the others again (dagq.store.machine.map_retry); otherwise
        a map node expands again."""
        q = queries()
        with self.db.tx() as cur:
            run = visible_run(cur, run_id, tenant)
            if run["status"] not in RETRYABLE_RUN_STATUSES:
                raise Conflict(
                    f"only failed, partial_succeeded or cancelled runs can be retried; "
                    f"run {run_id} is {run['status']}"
                )
            if cur.execute(q["count_run_nodes"], {"run_id": run_id}).fetchone()["remaining"]:
                raise Conflict(f"run {run_id} still has running nodes; retry when they stop")
            nodes = cur.execute(q["nodes_to_retry"], {"run_id": run_id}).fetchall()
            maps = MapResume.plan(cur, run_id, nodes) if failed_items else MapResume()
            nodes = [n for n in nodes if n["id"] not in maps.redo]
            cur.execute(q["delete_map_items"], {
                "run_id": run_id, "parent_ids": [n["id"] for n in nodes],
            })
            # Roots queue at once. A node whose dependencies all succeeded is held by one
            # pretend dependency and released below like any other node, so its `if` is
            # checked again and a map node expands again.
            ready = [n["node_key"] for n in nodes
                     if n["depends_on"] and n["deps_not_succeeded"] == 0]
            reset = cur.execute(q["reset_nodes_for_retry"], {
                "ids": [n["id"] for n in nodes],
                "statuses": [restart_status(n) for n in nodes],
                "deps_remaining": [max(n["deps_not_succeeded"], 1) if n["depends_on"] else 0
                                   for n in nodes],
            }).fetchall()
            parents, items = maps.reset(cur)
            # The run reopens before its nodes move: a sub-workflow node starts a child
            # only in an open run (its node rows are locked already: the usual order).
            cur.execute(q["lock_run"], {"run_id": run_id})
            cur.execute(q["reopen_run"], {"run_id": run_id, "reset": len(reset) + len(parents)})
            work = UnitOfWork()
            work.event(run_id, None, "run_queued", None, {"retry": True})
            self.m.release.restart(cur, work, run_id, reset, ready, {"retry": True})
            maps.started(cur, work, self.m, parents, items)
            cur.execute(q["delete_void_streams"], {"run_id": run_id})
            self.m.accounting.account_runs(cur, work)
            work.flush(cur)
        return "running"

    @transient
    def get_run(
        self, run_id: uuid.UUID, tenant: str | None = None, *, with_nodes: bool = True
    ) -> RunView:
        q = queries()
        with self.db.tx() as cur:
            row = visible_run(cur, run_id, tenant)
            nodes = cur.execute(q["run_nodes"], {"run_id": run_id}).fetchall() \
                if with_nodes else None
            children = cur.execute(q["run_children"], {"run_id": run_id}).fetchall()
        return _run_view(row, nodes, children)

    @transient
    def list_runs(
        self, *, tenant: str | None, status: str | None = None, workflow: str | None = None,
        limit: int = 50, cursor: tuple[datetime, uuid.UUID] | None = None,
        parent: uuid.UUID | None = None, meta: Mapping[str, str] | None = None,
        created_after: datetime | None = None, created_before: datetime | None = None,
    ) -> list[RunView]:
        """Newest first from `cursor`. `meta`: checked meta.K=V filters (a run matches when
        its metadata holds every key with a value spelled so: dagq.spec.metadata);
        created_after inclusive, created_before exclusive."""
        path = json_path(meta or {})
        q = queries()
        statement = q["list_runs"] if path is None else q["list_runs_by_metadata"]
        # Never prepared: its filters are optional parameters, so a generic plan (which
        # plan_cache_mode=auto may pick after 5 calls when the custom plans look dear,
        # e.g. before the first ANALYZE) sorts every run (test_plans_in_busy_states).
        with self.db.tx() as cur:
            rows = cur.execute(statement, prepare=False, params={
                "tenant": tenant, "status": status, "workflow": workflow, "limit": limit,
                "parent": parent, "created_after": created_after,
                "created_before": created_before,
                "meta": path,
                "cursor_at": cursor[0] if cursor else None,
                "cursor_id": cursor[1] if cursor else None,
            }).fetchall()
        return [_summary(row) for row in rows]

    @transient
    def runs_rerun(self, run_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these runs were rerun (some run's rerun_of)."""
        with self.db.tx() as cur:
            rows = cur.execute(queries()["runs_rerun"], {"ids": run_ids}).fetchall()
        return {row["id"] for row in rows}

    @transient
    def runs_by_id_prefix(self, prefix: str, tenant: str | None, *,
                          limit: int) -> list[RunView]:
        """Runs whose id starts with `prefix` (lowercase hex, dashes left out; checked by
        the caller), by id: a range scan of the primary key."""
        low, high = (uuid.UUID(hex=prefix.ljust(32, pad)) for pad in "0f")
        with self.db.tx() as cur:
            rows = cur.execute(queries()["runs_by_id_prefix"], {
                "low": low, "high": high, "tenant": tenant, "limit": limit}).fetchall()
        return [_summary(row) for row in rows]

    @transient
    def events(self, run_id: uuid.UUID, *, after: int = 0, limit: int = 1000) -> list[RunEvent]:
        with self.db.tx() as cur:
            rows = cur.execute(queries()["events_after"], {
                "run_id": run_id, "after": after, "limit": limit,
            }).fetchall()
        return [RunEvent(**row) for row in rows]
