"""Pause and resume a queue, a workflow (every version), a run or a tenant (issue 32,
item 3; docs/flow-control.md). Who may: an admin key anything; a tenant's key only its
own runs (a run of another tenant is a 404, as everywhere). The lease skips paused nodes
(sql/queries/leases.sql); here the checks before anything is written, and the submit
check for pauses that refuse submits."""

from __future__ import annotations

import re
import uuid

from dagq.errors import Forbidden, InvalidRequest, Paused
from dagq.models import PAUSE_KINDS, ApiKey, PauseRecord
from dagq.spec.workflow import KEY_PATTERN, QUEUE_PATTERN
from dagq.store import NewRun, Store

MAX_REASON = 1000
_NAMES = {"queue": re.compile(QUEUE_PATTERN), "workflow": re.compile(KEY_PATTERN)}


OPERATOR = "cli"  # the author of a pause made on the database (`dagq pause`)


def who(key: ApiKey | None) -> str:
    """How a pause records its author: the key's id and tenant (admin marked)."""
    if key is None:
        return OPERATOR
    return f"{'admin ' if key.admin else ''}key {key.id} (tenant {key.tenant})"


def check_pause(kind: str, name: str, reason: str | None) -> str:
    """The pause's name as stored (a run's canonical id); InvalidRequest otherwise."""
    if kind not in PAUSE_KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(PAUSE_KINDS)}")
    if not 0 < len(name) <= 200 or "\x00" in name:
        raise InvalidRequest("name needs 1 to 200 characters")
    pattern = _NAMES.get(kind)
    if pattern is not None and not pattern.match(name):
        raise InvalidRequest(f"{name!r} is not a valid {kind} name ({pattern.pattern})")
    if kind == "run":
        try:
            name = str(uuid.UUID(name))
        except ValueError:
            raise InvalidRequest(f"a run is named by its id: {name!r} is not one") from None
    if reason is not None and (len(reason) > MAX_REASON or "\x00" in reason):
        raise InvalidRequest(f"reason must be at most {MAX_REASON} characters")
    return name


def pause(repo: Store, key: ApiKey | None, *, kind: str, name: str,
          reason: str | None = None, refuse_submits: bool = False,
          ) -> tuple[PauseRecord, bool]:
    """Pause one thing for `key` (None: the operator, on the database: `dagq pause`);
    (the pause, whether it is new)."""
    name = check_pause(kind, name, reason)
    if key is not None and not key.admin and kind != "run":
        raise Forbidden(f"pausing a {kind} needs an admin key (a tenant's key may pause "
                        "only its own runs)")
    return repo.pauses.add_pause(
        kind=kind, name=name, by=who(key), reason=reason, refuse_submits=refuse_submits,
        tenant=name if kind == "tenant" else None, scope=_scope(key))


def resume(repo: Store, key: ApiKey | None, *, pause_id: uuid.UUID | None = None,
           kind: str | None = None, name: str | None = None) -> PauseRecord:
    """End a pause by id, or by kind and name (a tenant's key: only its runs' pauses)."""
    if pause_id is None:
        if kind is None or name is None:
            raise InvalidRequest("resume needs a pause id, or a kind and a name")
        name = check_pause(kind, name, None)
    return repo.pauses.end_pause(by=who(key), pause_id=pause_id, kind=kind, name=name,
                                 scope=_scope(key))


def _scope(key: ApiKey | None) -> str | None:
    return None if key is None or key.admin else key.tenant


def scopes(run: NewRun) -> list[tuple[str, str]]:
    """The (kind, name) pauses a new run's nodes would wait in: its tenant, its workflow,
    each of its nodes' queues (a run pause cannot exist before the run)."""
    queues = sorted({node["queue"] for node in run.nodes})
    return [("tenant", run.tenant), ("workflow", run.workflow),
            *(("queue", q) for q in queues)]


def refused(paused: frozenset[tuple[str, str]], run: NewRun) -> tuple[str, str] | None:
    """The refusing pause (kind, name) a new run would fall into, if any."""
    if not paused:
        return None
    return next((p for p in scopes(run) if p in paused), None)


def refusal(found: tuple[str, str]) -> Paused:
    kind, name = found
    return Paused(f"{kind} {name} is paused and refuses submits (dagq resume {kind} {name})",
                  {"kind": kind, "name": name})
