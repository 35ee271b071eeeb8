"""Durable waits, the pure part: when a wait ends and what it ends with.

A wait node's `wait_spec` (its `wait`, as stored) says what it waits for; the store's
transitions (dagq.store.machine.release: start and end a wait; dagq.store.signals:
deliver a signal; dagq.store.maintenance: fire due timers and timeouts) ask these
functions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def wait_deadline(wait: dict[str, Any]) -> tuple[float | None, str | None]:
    """When a wait starting now ends: (seconds from now, or an ISO time); (None, None) for
    a signal wait without timeout. An `until_path` is resolved by the caller."""
    if "signal" in wait:
        return wait.get("timeout_s"), None
    if "seconds" in wait:
        return float(wait["seconds"]), None
    return None, wait.get("until")


def parse_until(value: Any, where: str) -> tuple[str | None, str | None]:
    """An `until_path` value as an ISO time (a naive one is UTC), or the problem."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).isoformat(), None
    shown = repr(value)[:80]
    return None, f"wait.until_path {where} is not an ISO-8601 time (got {shown})"


def signal_outputs(name: str, signal_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """A wait node's outputs when a signal ends it (`data.<field>` for an `if`)."""
    return {"signal": name, "signal_id": signal_id, "data": data}


def due_outcome(
    wait: dict[str, Any], wait_until: datetime
) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
    """What a wait whose deadline passed becomes: (status, outputs, error). A timer
    succeeds; a signal wait applies its `on_timeout` (fail by default)."""
    if "signal" not in wait:
        return "succeeded", {"until": wait_until.isoformat()}, None
    on_timeout = wait.get("on_timeout", "fail")
    if on_timeout == "succeed":
        return "succeeded", {"timed_out": True}, None
    if on_timeout == "skip":
        return "skipped", None, None
    return "failed", None, {
        "type": "WaitTimeout",
        "message": f"no signal {wait['signal']!r} arrived within {wait.get('timeout_s')}s",
    }


def waiting_data(wait: dict[str, Any], wait_until: datetime | None) -> dict[str, Any]:
    """The node_waiting event's data: what the node waits for, and until when."""
    return {"wait": wait, "until": wait_until.isoformat() if wait_until else None}
