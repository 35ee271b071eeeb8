"""A run's life after its submission: reading it with its warnings, cancelling,
retrying and rerunning it, and signalling its wait nodes. The checks that need no run
(`check_signal`, `check_rerun`) are the ones the API's schemas make too; the CLI calls
them before either of its backends, so both modes answer bad input alike."""

from __future__ import annotations

import re
import uuid
from typing import Any

from dagq.config import get_settings
from dagq.errors import InvalidRequest
from dagq.jsonsafe import unstorable
from dagq.models import (
    RerunResult,
    ResolveResult,
    RunView,
    RunWarning,
    SignalResult,
)
from dagq.service.blocked import with_blocked
from dagq.service.waits import check_signal_data
from dagq.spec.rerun_plan import check_body
from dagq.spec.workflow import (
    KEY_PATTERN,
)
from dagq.states import OPEN_RUN_STATUSES
from dagq.store import Store


def run_warnings(repo: Store, run: RunView) -> list[RunWarning]:
    """While a run is open: one warning per executor and queue that no live worker
    serves (the module was removed, the workers are down), so it never waits silently."""
    if run.status not in OPEN_RUN_STATUSES:
        return []
    return [RunWarning.unserved(row) for row in repo.fleet.unserved_nodes(run.run_id)]


def get_run(repo: Store, run_id: uuid.UUID, tenant: str | None = None) -> RunView:
    """A run with its nodes, warnings, usage and blocked reasons (GET /v1/runs/{id},
    `dagq run show`, `dagq run why`)."""
    run = repo.runs.get_run(run_id, tenant)
    return with_blocked(repo, run.model_copy(update={
        "warnings": run_warnings(repo, run), "usage": repo.usage.run_usage(run.run_id)}))


def cancel_run(repo: Store, run_id: uuid.UUID, tenant: str | None) -> str:
    """Cancel an open run (POST /v1/runs/{id}/cancel); its new status."""
    return repo.runs.cancel_run(run_id, tenant)


RETRY_ITEMS = ("all", "failed")
CLI_RESOLVER = "cli-local"  # `by` of a node resolved through the database (`dagq run resolve`)


def check_retry_items(items: Any) -> bool:
    """A retry's `items`: "all" (a map node runs all its items again) or "failed" (only
    those that did not succeed). True for "failed"."""
    if items not in RETRY_ITEMS:
        raise InvalidRequest(f"'items' must be one of {', '.join(map(repr, RETRY_ITEMS))}, "
                             f"not {str(items)[:100]!r}")
    return bool(items == "failed")


def retry_run(repo: Store, run_id: uuid.UUID, tenant: str | None, items: str = "all") -> str:
    """Requeue a failed, partially succeeded or cancelled run's unfinished nodes
    (POST /v1/runs/{id}/retry); its new status. `items="failed"`: a map node keeps its
    succeeded items and runs only the others again."""
    return repo.runs.retry_run(run_id, tenant, failed_items=check_retry_items(items))


def check_resolve(node_key: Any, outputs: Any) -> None:
    """A resolve's checks that need no run: storable outputs, an object or (for a map
    node) a list. The node key is looked up as it is: one no node has is a 404, as an
    unknown run is (a map item's key is refused by the store with its reason)."""
    if not isinstance(node_key, str):
        raise InvalidRequest("a node key must be a string")
    if not isinstance(outputs, dict | list):
        raise InvalidRequest("'outputs' must be a JSON object (a JSON list for a map node)")
    if (problem := unstorable(outputs, "outputs")) is not None:
        raise InvalidRequest(problem)


def resolve_node(repo: Store, run_id: uuid.UUID, node_key: str, outputs: Any, *,
                 tenant: str | None, by: str) -> ResolveResult:
    """Mark a failed or cancelled node succeeded with `outputs` and let its run go on
    (POST /v1/runs/{id}/nodes/{key}/resolve, `dagq run resolve`); `by`: who did it, as
    the node_resolved event records it."""
    check_resolve(node_key, outputs)
    return repo.resume.resolve_node(run_id, node_key, outputs, tenant=tenant, by=by)


def check_rerun(from_: Any, outputs: Any, inputs: Any = None) -> None:
    """A rerun's checks that need no run: `from` a non-empty list of node keys (one that
    no node key can match names an unknown node), `outputs` an object of objects, and
    `inputs` storable."""
    check_body(from_, outputs)
    unknown = [key for key in from_ if not re.fullmatch(KEY_PATTERN, key)]
    if unknown:
        raise InvalidRequest(f"'from' names unknown node(s) {', '.join(map(repr, unknown))}",
                             {"unknown": unknown})
    if (problem := unstorable(inputs, "inputs")) is not None:
        raise InvalidRequest(problem)


def rerun_run(repo: Store, run_id: uuid.UUID, tenant: str | None, *, from_: Any,
              outputs: Any = None, inputs: Any = None) -> RerunResult:
    """A new run of a finished run from some of its nodes (POST /v1/runs/{id}/rerun,
    `dagq run rerun`)."""
    check_rerun(from_, outputs, inputs)
    return repo.reruns.rerun_run(run_id, tenant, from_=from_, outputs=outputs, inputs=inputs)


def check_signal(name: str, data: Any = None, signal_id: str | None = None) -> None:
    """A signal's checks that need no run."""
    if not re.fullmatch(KEY_PATTERN, name):
        raise InvalidRequest(f"signal name {name[:100]!r} must match [A-Za-z0-9_.-]{{1,64}}")
    if data is not None and not isinstance(data, dict):
        raise InvalidRequest("a signal's data must be a JSON object")
    if signal_id is not None and not 0 < len(signal_id) <= 200:
        raise InvalidRequest("signal_id needs 1 to 200 characters")


def send_signal(
    repo: Store, run_id: uuid.UUID, name: str, *, tenant: str | None,
    data: dict[str, Any] | None = None, signal_id: str | None = None,
    max_buffered: int | None = None,
) -> SignalResult:
    """A signal to a run's wait node (POST /v1/runs/{id}/signals/{name}, `dagq signal`).
    `max_buffered`: the run's bound on signals no node took (default: the setting)."""
    check_signal(name, data, signal_id)
    data = check_signal_data(repo, run_id, name, tenant, data)  # a wait's form (422)
    return repo.signals.send_signal(run_id, name, tenant=tenant, data=data, signal_id=signal_id,
                                    max_buffered=max_buffered
                                    or get_settings().max_buffered_signals_per_run)


def ensure_event_partitions(repo: Store) -> list[str]:
    """At an API process's start: the day partitions of the runs' events and chunks
    ahead, if missing (dagq.store.partitions; the sweeper makes them too)."""
    return repo.partitions.ensure_ahead()
