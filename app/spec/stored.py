"""Registered workflows as stored in dagq.workflows (issue 27 point 2): since 0.3.0 a
spec's `defaults` are stored as written, so that the executors' declared options apply
to whatever the user left unset; rows stored before hold them filled in, and read back
here as nearly as the JSON can tell what was written."""

from __future__ import annotations

from typing import Any

from dagq.spec.workflow import Defaults, WorkflowSpec, sha256_json

# A registered spec's hash (dagq.workflows.spec_hash) since 0.3.0 is tagged with this; a
# row whose hash is not was stored before, with its `defaults` filled in (stored_spec).
SPEC_FORMAT = "dagq.spec/2"
# What dagq < 0.3.0 stored in every registered spec: all of the defaults' fields.
FILLED_DEFAULTS = frozenset(Defaults.model_fields)


def stored_hash(spec: WorkflowSpec | dict[str, Any]) -> str:
    """A registered version's identity (dagq.workflows.spec_hash): of the spec as
    written, tagged so that a row can tell it from one stored before 0.3.0."""
    canonical = spec.canonical() if isinstance(spec, WorkflowSpec) else spec
    return sha256_json({"format": SPEC_FORMAT, "spec": canonical})


def stored_spec(raw: dict[str, Any], spec_hash: str) -> dict[str, Any]:
    """A dagq.workflows row's spec as its user wrote it (`spec_hash`: the row's).

    Before 0.3.0 registration stored `defaults` filled in: every field, the built-in
    values included, which then overrode the executors' declarations. The JSON cannot
    tell a written `max_attempts: 3` from a filled-in one, so in such a row (every field
    there, and a hash without SPEC_FORMAT's tag) a field equal to its built-in default
    counts as unset: nearly always it was filled in, and the executor's declaration
    applies, as it does inline. A field with another value was written, and stays."""
    defaults = raw.get("defaults")
    if not isinstance(defaults, dict) or not defaults.keys() >= FILLED_DEFAULTS:
        return raw
    if spec_hash == stored_hash(raw):
        return raw  # registered since 0.3.0 with every field written
    return _unfilled(raw)


def legacy_hash(spec: WorkflowSpec) -> str | None:
    """The hash dagq < 0.3.0 stored for this spec, when a row stored that way reads back
    (stored_spec) with the same defaults written as this spec: registering it again finds
    that row, no new version. (Their values are the same: both are this spec filled in.)"""
    filled = spec.filled()
    written = _unfilled(filled).get("defaults", {})
    return sha256_json(filled) if written.keys() == spec.defaults.model_fields_set else None


def _unfilled(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` without the defaults that equal the built-in ones."""
    builtin = Defaults().model_dump(mode="json")
    written = {key: value for key, value in raw["defaults"].items()
               if key not in builtin or value != builtin[key]}
    spec = {key: value for key, value in raw.items() if key != "defaults"}
    return {**spec, "defaults": written} if written else spec
