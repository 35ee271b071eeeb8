"""Executor options precedence (issue 27 point 2): node field > workflow `defaults` as
written > the executor's declaration > built-in default, whatever path the spec took
(parsed, stored and parsed back, a row stored before 0.3.0)."""

from __future__ import annotations

from typing import Any

from dagq.models import ExecutorInfo
from dagq.spec.stored import legacy_hash, stored_hash, stored_spec
from dagq.spec.workflow import WorkflowSpec, fill_executor_defaults, parse_spec, sha256_json
from dagq.store.new_runs import node_rows

KNOWN = {
    "llm.answer": ExecutorInfo(name="llm.answer", queue="llm", max_attempts=5, timeout_s=120),
    "shop.score": ExecutorInfo(name="shop.score", max_attempts=2),
    "plain": ExecutorInfo(name="plain"),
}


def options(spec: WorkflowSpec) -> dict[str, tuple[str, int, float]]:
    """Each node's (queue, max_attempts, timeout_s) as its node_tasks row gets them."""
    return {row["node_key"]: (row["queue"], row["max_attempts"], row["timeout_s"])
            for row in node_rows(fill_executor_defaults(spec, KNOWN), 0)}


def raw(**extra: Any) -> dict[str, Any]:
    return {"name": "wf", "nodes": {
        "answer": {"executor": "llm.answer"},
        "score": {"executor": "shop.score"},
        "plain": {"executor": "plain"},
        "pinned": {"executor": "llm.answer", "queue": "gpu", "max_attempts": 9,
                   "timeout_s": 7},
    }, **extra}


def test_the_four_levels() -> None:
    spec = parse_spec(raw(defaults={"max_attempts": 4}))
    assert options(spec) == {
        "answer": ("llm", 4, 120.0),     # written defaults > executor; executor > built-in
        "score": ("default", 4, 60.0),
        "plain": ("default", 4, 60.0),   # built-in (the executor declares nothing)
        "pinned": ("gpu", 9, 7.0),       # the node's own fields first
    }
    assert options(parse_spec(raw())) == {
        "answer": ("llm", 5, 120.0), "score": ("default", 2, 60.0),
        "plain": ("default", 3, 60.0), "pinned": ("gpu", 9, 7.0)}


def test_written_defaults_equal_to_the_built_in_ones_still_count() -> None:
    spec = parse_spec(raw(defaults={"queue": "default", "max_attempts": 3, "timeout_s": 60}))
    assert options(spec)["answer"] == ("default", 3, 60.0)


def test_a_stored_spec_parses_back_with_the_same_options() -> None:
    """canonical() is what registration stores (and every round trip goes through): it
    must not turn the built-in defaults into written ones."""
    for spec in (parse_spec(raw()), parse_spec(raw(defaults={"timeout_s": 30}))):
        again = parse_spec(spec.canonical())
        assert again.defaults.model_fields_set == spec.defaults.model_fields_set
        assert options(again) == options(spec)
        filled_twice = fill_executor_defaults(fill_executor_defaults(spec, KNOWN), KNOWN)
        assert options(filled_twice) == options(spec)
    assert "defaults" not in parse_spec(raw()).canonical()
    assert parse_spec(raw(defaults={"backoff": {"initial_s": 2}})).canonical()["defaults"] == {
        "backoff": {"initial_s": 2.0}}


def old_row(spec_raw: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A workflows row as dagq < 0.3.0 wrote it: defaults filled in, hashed as stored."""
    stored = parse_spec(spec_raw).model_dump(mode="json", by_alias=True, exclude_none=True)
    return stored, sha256_json(stored)


def test_a_row_stored_before_the_fix_reads_back_as_written() -> None:
    stored, row_hash = old_row(raw())
    assert stored["defaults"]["max_attempts"] == 3  # (the old code filled it in)
    assert options(parse_spec(stored))["answer"] == ("default", 3, 60.0)  # the bug
    read = stored_spec(stored, row_hash)
    assert "defaults" not in read
    assert options(parse_spec(read)) == options(parse_spec(raw()))


def test_an_old_rows_defaults_other_than_the_built_in_ones_were_written() -> None:
    stored, row_hash = old_row(raw(defaults={"timeout_s": 30, "queue": "llm"}))
    read = stored_spec(stored, row_hash)
    assert read["defaults"] == {"timeout_s": 30.0, "queue": "llm"}
    assert options(parse_spec(read))["score"] == ("llm", 2, 30.0)


def test_a_new_row_with_every_default_written_is_kept_as_written() -> None:
    spec = parse_spec(raw(defaults={"queue": "default", "max_attempts": 3, "timeout_s": 60,
                                    "backoff": {"initial_s": 1, "max_s": 60}}))
    read = stored_spec(spec.canonical(), stored_hash(spec))
    assert read == spec.canonical()
    assert options(parse_spec(read))["answer"] == ("default", 3, 60.0)
    # ... and one with some of them is never touched, whatever its hash
    partial = parse_spec(raw(defaults={"max_attempts": 3})).canonical()
    assert stored_spec(partial, "whatever") == partial


def test_the_legacy_hash_finds_an_old_row_only_if_it_reads_back_the_same() -> None:
    for spec_raw in (raw(), raw(defaults={"timeout_s": 30})):
        stored, row_hash = old_row(spec_raw)
        assert legacy_hash(parse_spec(spec_raw)) == row_hash
    # written with the built-in value: the old row would read back without it
    assert legacy_hash(parse_spec(raw(defaults={"max_attempts": 3}))) is None


def test_the_idempotency_hash_is_unchanged_by_the_fix() -> None:
    """spec_hash() is the event-key fingerprint's part: a run submitted before an
    upgrade still matches a retry of the same submit after it."""
    spec = parse_spec(raw())
    assert spec.spec_hash() == old_row(raw())[1]
    assert stored_hash(spec) != spec.spec_hash()
