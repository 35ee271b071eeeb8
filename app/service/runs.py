"""Reading a run with its warnings, and signalling its wait nodes."""

from __future__ import annotations

import re
import uuid
from typing import Any

from dagq.config import get_settings
from dagq.errors import InvalidRequest
from dagq.models import (
    RunView,
    RunWarning,
    SignalResult,
)
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


def send_signal(
    repo: Store, run_id: uuid.UUID, name: str, *, tenant: str | None,
    data: dict[str, Any] | None = None, signal_id: str | None = None,
    max_buffered: int | None = None,
) -> SignalResult:
    """A signal to a run's wait node (POST /v1/runs/{id}/signals/{name}, `dagq signal`).
    `max_buffered`: the run's bound on signals no node took (default: the setting)."""
    if not re.fullmatch(KEY_PATTERN, name):
        raise InvalidRequest(f"signal name {name[:100]!r} must match [A-Za-z0-9_.-]{{1,64}}")
    if data is not None and not isinstance(data, dict):
        raise InvalidRequest("a signal's data must be a JSON object")
    if signal_id is not None and not 0 < len(signal_id) <= 200:
        raise InvalidRequest("signal_id needs 1 to 200 characters")
    return repo.signals.send_signal(run_id, name, tenant=tenant, data=data, signal_id=signal_id,
                                    max_buffered=max_buffered
                                    or get_settings().max_buffered_signals_per_run)
