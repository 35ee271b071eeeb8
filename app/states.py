"""Run and node statuses, and the sets built from them: the one source for every module
(the dashboard gets them from the API).

The SQL side (migrations, named queries) spells the same names;
tests/integration/runtime/test_states.py checks the database's CHECK constraints against them.
"""

from __future__ import annotations

from typing import Literal, get_args

RunStatus = Literal["queued", "running", "succeeded", "failed", "partial_succeeded", "cancelled"]
NodeStatus = Literal[
    "pending", "queued", "running", "waiting", "succeeded", "failed", "skipped", "cancelled"]

RUN_STATUSES: frozenset[str] = frozenset(get_args(RunStatus))
NODE_STATUSES: frozenset[str] = frozenset(get_args(NodeStatus))

OPEN_RUN_STATUSES = frozenset({"queued", "running"})
TERMINAL_RUN_STATUSES = RUN_STATUSES - OPEN_RUN_STATUSES
# A finished run that `retry` may start again (a succeeded run has nothing to retry).
RETRYABLE_RUN_STATUSES = frozenset({"failed", "partial_succeeded", "cancelled"})

# `waiting`: a wait node holding no worker until its signal or timer (see dagq.store.machine.waits).
OPEN_NODE_STATUSES = frozenset({"pending", "queued", "running", "waiting"})
TERMINAL_NODE_STATUSES = NODE_STATUSES - OPEN_NODE_STATUSES

# The run-level events that end a run's event stream (a retry's run_queued reopens it).
TERMINAL_RUN_EVENTS = frozenset(f"run_{status}" for status in TERMINAL_RUN_STATUSES)
