"""ARCHITECTURE-0.3 §4, "writes go through the service": dagq.api and dagq.cli change state
only through dagq.service (they may read straight from the store). A call, in app/api or
app/cli, of a store method that writes is refused unless its receiver is `service`."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CALLERS = ("app/api", "app/cli")

# The store's methods that change state (ARCHITECTURE-0.3 §3's table, reads left out).
STORE_WRITES = frozenset({
    "register_workflow", "submit_run", "submit_runs", "submit_keyed", "cancel_run",
    "retry_run", "rerun_run", "send_signal", "lease", "heartbeat", "complete_and_lease",
    "fail", "requeue_unstarted", "append_stream", "reclaim_expired", "expire_dead_workers",
    "heal_runs", "start_free_slots", "enforce_deadlines", "fire_due_waits", "prune",
    "register_worker", "stop_worker", "insert_schedule", "delete_schedule", "record_firing",
    "put_tenant", "insert_api_key", "store_result", "prune_results", "counter_add",
    "counter_change", "counter_incr_and_sum", "dead_letter_unserved",
})


def _receiver(node: ast.Attribute) -> str:
    return ast.unparse(node.value)


def direct_writes(source: str, name: str) -> list[str]:
    """`name:line: receiver.method` for each store write named (called or passed on)."""
    return [f"{name}:{node.lineno}: {_receiver(node)}.{node.attr}"
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Attribute) and node.attr in STORE_WRITES
            and _receiver(node) != "service"]


def test_the_api_and_the_cli_write_only_through_the_service() -> None:
    files = [path for folder in CALLERS for path in sorted((ROOT / folder).rglob("*.py"))]
    assert files
    assert [hit for path in files
            for hit in direct_writes(path.read_text(), str(path.relative_to(ROOT)))] == []


def test_a_direct_write_is_found() -> None:
    source = ("def f(state, run_id):\n    state.repo.runs.cancel_run(run_id, None)\n"
              "    service.cancel_run(state.repo, run_id, None)\n"
              "    return run_in_threadpool(state.repo.delete_schedule, run_id, None)\n")
    assert direct_writes(source, "x.py") == ["x.py:2: state.repo.runs.cancel_run",
                                             "x.py:4: state.repo.delete_schedule"]
