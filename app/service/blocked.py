"""Why a node is not running (issue 32, item 6; docs/flow-control.md): the reasons that
follow from the run's own rows, its pauses and its warnings, computed when a run is read
(GET /v1/runs/{id}, `dagq run show`, `dagq run why`), never stored.

Reasons, in the order they are checked: `paused` (its queue, workflow, run or tenant),
`no_worker` (no live worker serves its executor in its queue), `dependencies` (a pending
node), `signal` / `timer` (a waiting node), `retry_backoff` (queued, available later).
A queued node with none of these is ready and waits for a free worker: not blocked."""

from __future__ import annotations

from datetime import UTC, datetime

from dagq.models import Blocked, NodeView, PauseRecord, RunView
from dagq.states import OPEN_RUN_STATUSES
from dagq.store import Store

TERMINAL = frozenset({"succeeded", "failed", "skipped", "cancelled"})
MAX_NAMED = 10  # dependencies named in a detail; the rest counted


def _blocked(reason: str, detail: str, since: datetime | None,
             until: datetime | None = None) -> Blocked:
    """A Blocked built from values this module made (no validation: a run of 1,000
    held nodes is read in a few milliseconds)."""
    return Blocked.model_construct(reason=reason, detail=detail, since=since, until=until)


def with_blocked(repo: Store, run: RunView, now: datetime | None = None) -> RunView:
    """`run` with `blocked` on each node that does not run now, and on the run (the
    reason of its earliest-blocked node: the one blocked longest for itself)."""
    if run.status not in OPEN_RUN_STATUSES or not run.nodes:
        return run
    now = now or datetime.now(UTC)
    pauses = _pauses(repo, run)
    unserved = {(w.executor, w.queue) for w in run.warnings if w.code == "unserved"}
    status = {n.key: n.status for n in run.nodes}
    nodes = []
    for n in run.nodes:  # (copied only when held: a big run's read stays cheap)
        why = _why(n, run, status, pauses, unserved, now)
        nodes.append(n if why is None else n.model_copy(update={"blocked": why}))
    blocked = [n.blocked for n in nodes if n.blocked is not None]
    # The run's reason: its earliest-blocked node's, a node held for itself (a pause, a
    # back-off, ...) before one that only waits for it (dependencies).
    first = min(blocked, key=lambda b: (b.reason == "dependencies", b.since or now),
                default=None)
    return run.model_copy(update={"nodes": nodes, "blocked": first})


def _pauses(repo: Store, run: RunView) -> dict[tuple[str, str], PauseRecord]:
    """The active pauses this run's queued nodes could wait in."""
    queues = {n.queue for n in run.nodes or [] if n.queue and n.status == "queued"}
    if not queues:
        return {}
    wanted = {("run", str(run.run_id)), ("workflow", run.workflow), ("tenant", run.tenant),
              *(("queue", q) for q in queues)}
    return {(p.kind, p.name): p for p in repo.pauses.list_pauses(None, limit=1000)
            if (p.kind, p.name) in wanted}


def _why(node: NodeView, run: RunView, status: dict[str, str],
         pauses: dict[tuple[str, str], PauseRecord], unserved: set[tuple[str, str]],
         now: datetime) -> Blocked | None:
    if node.status == "pending":
        waiting = [d for d in node.depends_on if status.get(d) not in TERMINAL]
        if not waiting:
            return None  # (released in the same moment; a sub-workflow's start)
        named = ", ".join(waiting[:MAX_NAMED]) + (
            f" and {len(waiting) - MAX_NAMED} more" if len(waiting) > MAX_NAMED else "")
        return _blocked("dependencies", f"waits for {named}", run.started_at or run.created_at)
    if node.status == "waiting":
        signal = (node.wait or {}).get("signal")
        return Blocked(reason="signal" if signal else "timer",
                       detail=f"waits for the signal {signal!r}" if signal
                       else "waits for its timer",
                       since=node.started_at or node.queued_at, until=node.wait_until)
    if node.status != "queued":
        return None
    for key in (("run", str(run.run_id)), ("workflow", run.workflow),
                ("tenant", run.tenant), ("queue", node.queue or "")):
        pause = pauses.get(key)
        if pause is not None:
            why = f": {pause.reason}" if pause.reason else ""
            return Blocked(reason="paused", since=pause.created_at,
                           detail=f"{pause.kind} {pause.name} paused by "
                                  f"{pause.created_by}{why}")
    if (node.executor, node.queue) in unserved:
        return Blocked(reason="no_worker", since=node.queued_at,
                       detail=f"no live worker serves executor {node.executor!r} in "
                              f"queue {node.queue!r}")
    if node.available_at is not None and node.available_at > now:
        return Blocked(reason="retry_backoff", since=node.queued_at, until=node.available_at,
                       detail=f"attempt {node.attempts + 1} of {node.max_attempts} "
                              "waits for its back-off")
    return None
