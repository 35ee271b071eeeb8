"""Workflows: registered as numbered versions (idempotent by spec hash), and read."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from dagq.errors import Conflict, NotFound
from dagq.models import WorkflowRecord
from dagq.runtime.sqlfiles import queries
from dagq.spec.stored import legacy_hash, stored_hash, stored_spec
from dagq.spec.workflow import WorkflowSpec
from dagq.store.tx import Database, transient


def _record(row: dict[str, Any]) -> WorkflowRecord:
    """A workflows row with its spec as written (a row stored before 0.3.0 included)."""
    return WorkflowRecord(name=row["name"], version=row["version"],
                          spec=stored_spec(row["spec"], row["spec_hash"]),
                          created_at=row["created_at"])


class WorkflowRepo:
    """Workflow registration and reads."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @transient
    def register_workflow(self, spec: WorkflowSpec) -> tuple[WorkflowRecord, bool]:
        """Store the spec as the next version of its name, unless identical to one stored.
        One transaction: registrations of one name take turns on an advisory lock, so the
        next version number never collides."""
        q = queries()
        canonical, spec_hash = spec.canonical(), stored_hash(spec)
        hashes = [spec_hash, *filter(None, [legacy_hash(spec)])]
        with self.db.tx() as cur:
            cur.execute(q["lock_workflow_name"], {"name": spec.name})
            same = cur.execute(
                q["workflow_by_hash"], {"name": spec.name, "spec_hashes": hashes}
            ).fetchone()
            if same:
                return WorkflowRecord(name=same["name"], version=same["version"],
                                      spec=canonical), False
            row = cur.execute(q["insert_workflow_version"], {
                "name": spec.name, "spec": Jsonb(canonical), "spec_hash": spec_hash,
            }).fetchone()
        if row is None:  # only a writer that bypassed the lock could take the number
            raise Conflict(f"workflow {spec.name!r} is being registered concurrently; try again")
        return WorkflowRecord(name=row["name"], version=row["version"], spec=canonical), True

    @transient
    def get_workflow(self, name: str, version: int | None = None) -> WorkflowRecord:
        q = queries()
        with self.db.tx() as cur:
            if version is None:
                row = cur.execute(q["get_workflow_latest"], {"name": name}).fetchone()
            else:
                row = cur.execute(
                    q["get_workflow_version"], {"name": name, "version": version}
                ).fetchone()
        if row is None:
            suffix = f" version {version}" if version is not None else ""
            raise NotFound(f"workflow {name!r}{suffix} not found")
        return _record(row)

    @transient
    def list_workflows(self) -> list[WorkflowRecord]:
        with self.db.tx() as cur:
            return [_record(row) for row in cur.execute(queries()["list_workflows"])]
