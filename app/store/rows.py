"""The node_tasks rows of a new run (a submit, a group commit, a child run)."""

from __future__ import annotations

from typing import Any

from dagq.spec.workflow import WAIT_EXECUTOR, WORKFLOW_EXECUTOR, WorkflowSpec
from dagq.store.waits import wait_deadline


def node_rows(spec: WorkflowSpec, run_priority: int) -> list[dict[str, Any]]:
    """The node_tasks rows of a new run, as JSON for jsonb_to_recordset."""
    defaults = spec.defaults
    dependents = spec.dependents()
    rows = []
    for key in spec.topological_order():
        node = spec.nodes[key]
        backoff = node.backoff or defaults.backoff
        wait = node.wait.model_dump(mode="json", exclude_none=True) if node.wait else None
        offset, until = wait_deadline(wait) if wait else (None, None)
        subflow = node.workflow.model_dump(exclude_none=True) if node.workflow else None
        waits = wait is not None or (subflow is not None and node.map is None)
        rows.append({
            "node_key": key, "queue": node.queue or defaults.queue,
            "executor": node.executor or (WORKFLOW_EXECUTOR if subflow else WAIT_EXECUTOR),
            "status": "pending" if node.depends_on else "waiting" if waits else "queued",
            "wait_spec": wait, "wait_offset_s": offset, "wait_until": until,
            "subflow": subflow,
            "priority": run_priority + node.priority,
            "max_attempts": node.max_attempts or defaults.max_attempts,
            "timeout_s": node.timeout_s or defaults.timeout_s,
            "backoff_initial_s": backoff.initial_s, "backoff_max_s": backoff.max_s,
            "params": node.params, "depends_on": node.depends_on,
            "dependents": dependents[key],
            "condition": node.if_.model_dump(by_alias=True) if node.if_ else None,
            "map_over": node.map.model_dump() if node.map else None,
        })
    return rows


def starts_children(nodes: list[dict[str, Any]]) -> bool:
    """A new run with a root sub-workflow node starts its child in its submit."""
    return any(node["subflow"] is not None and node["status"] == "waiting" for node in nodes)
