"""An attempt's usage() calls, buffered on its lease until its outcome is written.

Nothing is written when usage() is called: the records ride with the attempt's outcome
(the completion's group-commit transaction, or the failure's), which the worker commits
anyway, so recording usage costs one more statement in that transaction. An attempt
whose outcome is discarded (it lost its lease) writes its records on their own, fenced.
If the worker process dies mid-attempt, its buffered records die with it: the attempt
runs again and reports its own usage (docs/cost.md, "What a crash loses").
"""

from __future__ import annotations

import json
import threading
from typing import Any

from dagq.jsonsafe import unstorable
from dagq.models import LeasedNode
from dagq.usage import MAX_EXTRA_BYTES, UsageRecord, check_usage

MAX_CALLS = 10_000  # per attempt: a loop calling usage() per token is a bug, not a bill


class UsageMeter:
    """The usage records of one attempt (usage() may be called from any thread)."""

    def __init__(self, node: LeasedNode) -> None:
        self.node = node
        self._lock = threading.Lock()
        self._records: list[UsageRecord] = []
        self._seq = 0

    def add(self, model: Any, input_tokens: Any, output_tokens: Any,
            cost_usd: Any = None, extra: dict[str, Any] | None = None) -> UsageRecord:
        """Check and buffer one call's usage (ValueError on bad arguments: nothing kept)."""
        model, inputs, outputs, cost = check_usage(model, input_tokens, output_tokens, cost_usd)
        if extra:
            _check_extra(extra)
        node = self.node
        with self._lock:
            if self._seq >= MAX_CALLS:
                raise ValueError(f"usage() called more than {MAX_CALLS} times in one attempt")
            self._seq += 1
            record = UsageRecord(
                node_id=node.id, version=node.version, seq=self._seq, run_id=node.run_id,
                node_key=node.node_key, attempt=node.attempts, executor=node.executor,
                model=model, input_tokens=inputs, output_tokens=outputs, cost_usd=cost,
                item_index=node.item_index, extra=extra or None)
            self._records.append(record)
        return record

    def recorded(self) -> list[UsageRecord]:
        """The records not yet taken (dagq.testing's fake node shows them)."""
        with self._lock:
            return list(self._records)

    def take(self) -> tuple[UsageRecord, ...]:
        """The records not yet handed to a write (each is handed once)."""
        with self._lock:
            records, self._records = tuple(self._records), []
        return records


def _check_extra(extra: dict[str, Any]) -> None:
    """usage()'s extra keywords must be small, storable JSON (a bad value must fail the
    call, not the attempt's completion transaction later)."""
    problem = unstorable(extra, "usage() extra")
    if problem is None:
        try:
            size = len(json.dumps(extra, allow_nan=False).encode())
        except (TypeError, ValueError) as exc:
            problem = f"usage() extra must be JSON: {exc}"
        else:
            if size > MAX_EXTRA_BYTES:
                problem = f"usage() extra is larger than {MAX_EXTRA_BYTES} bytes of JSON"
    if problem is not None:
        raise ValueError(problem)
