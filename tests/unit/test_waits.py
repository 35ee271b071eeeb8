"""The pure part of durable waits (dagq.store.machine.waits): deadlines and outcomes."""

from __future__ import annotations

from datetime import UTC, datetime

from dagq.store.machine.waits import due_outcome, parse_until, wait_deadline

WHEN = datetime(2026, 12, 24, 9, tzinfo=UTC)


def test_deadlines() -> None:
    assert wait_deadline({"signal": "a"}) == (None, None)
    assert wait_deadline({"signal": "a", "timeout_s": 60}) == (60, None)
    assert wait_deadline({"seconds": 5}) == (5.0, None)
    assert wait_deadline({"until": "2026-12-24T09:00:00Z"}) == (None, "2026-12-24T09:00:00Z")
    assert wait_deadline({"until_path": {"dep": "p", "path": "x"}}) == (None, None)


def test_until_path_values() -> None:
    assert parse_until("2026-12-24T09:00:00Z", "p.x") == ("2026-12-24T09:00:00+00:00", None)
    assert parse_until("2026-12-24T09:00:00", "p.x")[0] == "2026-12-24T09:00:00+00:00"
    for bad in ("tomorrow", None, 1766566800, {"at": 1}):
        until, problem = parse_until(bad, "p.x")
        assert until is None and "wait.until_path p.x is not an ISO-8601 time" in problem


def test_what_a_due_wait_becomes() -> None:
    assert due_outcome({"seconds": 5}, WHEN) == (
        "succeeded", {"until": "2026-12-24T09:00:00+00:00"}, None)
    assert due_outcome({"signal": "a", "timeout_s": 5, "on_timeout": "succeed"}, WHEN) == (
        "succeeded", {"timed_out": True}, None)
    assert due_outcome({"signal": "a", "timeout_s": 5, "on_timeout": "skip"}, WHEN) == (
        "skipped", None, None)
    status, outputs, error = due_outcome({"signal": "a", "timeout_s": 5}, WHEN)
    assert (status, outputs, error["type"]) == ("failed", None, "WaitTimeout")
    assert "no signal 'a' arrived within 5s" in error["message"]
