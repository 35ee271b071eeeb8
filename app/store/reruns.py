"""Rerun a terminal run from some of its nodes, as a new run (`rerun_of` the original).

The new run is written by the submit's own statement (`submit_run`, rows from
`node_rows`), with the nodes to copy inserted pending and ended at once in the same
transaction (succeeded with their outputs, or skipped, without an attempt); their ends
then move through the new run as any node's end does (the machine's `release`: queue,
skip, expand a map, start a wait), and the run is accounted as a completion would
account it.
"""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.types.json import Jsonb

from dagq.errors import Conflict, NotFound
from dagq.models import RerunResult
from dagq.runtime.sqlfiles import queries
from dagq.spec.rerun_plan import RerunPlan, plan_rerun
from dagq.spec.workflow import Concurrency, WorkflowSpec, parse_spec, sha256_json
from dagq.states import OPEN_RUN_STATUSES
from dagq.store.concurrency import rerun_concurrency, take_for_rerun
from dagq.store.machine import Machine
from dagq.store.machine.unit import UnitOfWork, run_created
from dagq.store.new_runs import node_rows, starts_children
from dagq.store.tx import Database, transient


def _first_events(spec: WorkflowSpec, version: int | None, source_id: uuid.UUID,
                  plan: RerunPlan, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """run_queued and run_started (copied nodes have ended: the run has begun), each
    copied node's end, then the roots that run again (queued, or waiting)."""
    copied_from = str(source_id)
    return [
        {"type": "run_queued",
         "data": {"workflow": spec.name, "version": version, "rerun_of": copied_from}},
        {"type": "run_started"},
        *({"node_key": key, "type": f"node_{copy.status}", "attempt": 0,
           "data": {"copied_from": copied_from,
                    **({"outputs_overridden": True} if copy.overridden else {})}}
          for key, copy in plan.copies.items()),
        *({"node_key": node["node_key"], "type": "node_queued", "attempt": 0}
          for node in nodes if node["status"] == "queued"),
        *({"node_key": node["node_key"], "type": "node_waiting", "attempt": 0,
           "data": {"wait": node["wait_spec"]}}
          for node in nodes if node["status"] == "waiting"),
    ]


class RerunRepo:
    """A new run from a terminal one, copying what is not downstream of `from`."""

    def __init__(self, db: Database, machine: Machine) -> None:
        self.db, self.m = db, machine

    def rerun_run(self, run_id: uuid.UUID, tenant: str | None, *, from_: Any,
                  outputs: Any = None, inputs: Any = None) -> RerunResult:
        """One transaction: NotFound (unknown run, or another tenant's), Conflict (the run
        is not terminal), InvalidRequest (the body); nothing written on any of them."""
        new_id = uuid.uuid4()  # chosen once, so a retried transaction finds its own row
        return self._rerun(new_id, run_id, tenant, from_, outputs, inputs)

    @transient
    def _rerun(self, new_id: uuid.UUID, run_id: uuid.UUID, tenant: str | None, from_: Any,
               outputs: Any, inputs: Any) -> RerunResult:
        q = queries()
        with self.db.tx() as cur:
            source = cur.execute(q["rerun_source"], {"run_id": run_id}).fetchone()
            if source is None or (tenant is not None and source["tenant"] != tenant):
                raise NotFound(f"run {run_id} not found")
            if source["status"] in OPEN_RUN_STATUSES:
                raise Conflict(f"run {run_id} is {source['status']}: only a finished run "
                               "can be rerun", {"status": source["status"]})
            spec = parse_spec(source["spec"])
            ended = {row["node_key"]: row for row in
                     cur.execute(q["rerun_source_nodes"], {"run_id": run_id}).fetchall()}
            plan = plan_rerun(spec, ended, from_, outputs)
            run_inputs = source["inputs"] if inputs is None else inputs
            concurrency, key = rerun_concurrency(spec.concurrency, source, run_inputs)
            if concurrency is not None and key is not None:
                take_for_rerun(cur, new_id, source["tenant"], concurrency, key,
                               self.m.accounting.cancelled_run_finished)
            nodes = [{**row, "status": "pending"} if row["node_key"] in plan.copies else row
                     for row in node_rows(spec, source["priority"])]
            row = cur.execute(q["submit_run"], {
                "id": new_id, "tenant": source["tenant"], "workflow": spec.name,
                "workflow_version": source["workflow_version"],
                "spec": Jsonb(spec.canonical()),
                "fingerprint": sha256_json({"rerun_of": str(run_id), "id": str(new_id)}),
                "event_key": None, "priority": source["priority"],
                "fail_fast": spec.fail_fast,
                "inputs": Jsonb(run_inputs),
                "nodes_total": len(spec.nodes), "deadline_s": source["deadline_s"],
                "nodes": Jsonb(nodes), "started": True, "delay_s": None, "traceparent": None,
                "events": Jsonb(_first_events(spec, source["workflow_version"], run_id,
                                              plan, nodes)),
            }).fetchone()
            if row is not None:  # (None: this is a retry whose first try committed)
                self._copy_and_release(cur, new_id, run_id, spec, plan, concurrency, key,
                                       root_children=starts_children(nodes))
                run_created(new_id, (n["queue"] for n in nodes if n["status"] == "queued"))
        return RerunResult(run_id=new_id, rerun_of=run_id)

    def _copy_and_release(self, cur: Any, new_id: uuid.UUID, source_id: uuid.UUID,
                          spec: WorkflowSpec, plan: RerunPlan,
                          concurrency: Concurrency | None, key: str | None, *,
                          root_children: bool) -> None:
        """End the copied nodes, then release what depends on them, as their ends (and a
        root sub-workflow node that runs again starts its child, as in a submit)."""
        q = queries()
        cur.execute(q["mark_rerun_of"], {
            "run_id": new_id, "rerun_of": source_id, "concurrency_key": key,
            "concurrency_limit": concurrency.limit if concurrency is not None else None})
        cur.execute(q["copy_rerun_nodes"], {"run_id": new_id, "nodes": Jsonb([
            {"node_key": key, "status": copy.status, "outputs": copy.outputs}
            for key, copy in plan.copies.items()])})
        work = UnitOfWork()
        dependents = spec.dependents()
        released: dict[bool, list[tuple[uuid.UUID, str]]] = {False: [], True: []}
        for key, copy in plan.copies.items():
            work.ended(new_id, copy.status)
            released[copy.status == "skipped"].extend(
                (new_id, dep) for dep in dependents[key] if dep in plan.rerun)
        self.m.release.release(cur, work, released[False], skipped=False)
        self.m.release.release(cur, work, released[True], skipped=True)
        if root_children:
            self.m.children.start_roots(cur, work, [new_id])
        self.m.accounting.account_runs(cur, work)
        work.flush(cur)
