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
    RunView,
    RunWarning,
    SignalResult,
)
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
    """A run with its nodes and warnings (GET /v1/runs/{id}, `dagq run show`)."""
    run = repo.runs.get_run(run_id, tenant)
    return run.model_copy(update={"warnings": run_warnings(repo, run)})


def cancel_run(repo: Store, run_id: uuid.UUID, tenant: str | None) -> str:
    """Cancel an open run (POST /v1/runs/{id}/cancel); its new status."""
    return repo.runs.cancel_run(run_id, tenant)


def retry_run(repo: Store, run_id: uuid.UUID, tenant: str | None) -> str:
    """Requeue a failed, partially succeeded or cancelled run's unfinished nodes
    (POST /v1/runs/{id}/retry); its new status."""
    return repo.runs.retry_run(run_id, tenant)


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
    return repo.signals.send_signal(run_id, name, tenant=tenant, data=data, signal_id=signal_id,
                                    max_buffered=max_buffered
                                    or get_settings().max_buffered_signals_per_run)
