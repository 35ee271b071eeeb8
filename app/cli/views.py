"""What the CLI shows people: run tables, node tables and a live progress bar."""

from __future__ import annotations

import contextlib
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dagq import service
from dagq.models import NodeView, RerunResult, RunView, SignalResult
from dagq.states import OPEN_RUN_STATUSES, TERMINAL_NODE_STATUSES

if TYPE_CHECKING:
    from dagq.api.schemas import RunSummary
    from dagq.runtime.migrate import SchemaState

WARN_EVERY_S = 2.0  # how often --wait checks that live workers serve the run
COLOURS = {"succeeded": "green", "failed": "red", "partial_succeeded": "yellow",
           "cancelled": "magenta", "running": "cyan", "queued": "blue", "pending": "white",
           "skipped": "bright_black", "waiting": "bright_yellow"}

out = Console()
err = Console(stderr=True)


def _status(status: str) -> str:
    return f"[{COLOURS.get(status, 'white')}]{status}[/]"


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def runs_table(runs: Sequence[RunView | RunSummary]) -> None:
    table = Table(title=f"{len(runs)} run(s), newest first")
    for column in ("run id", "tenant", "workflow", "status", "nodes left", "created",
                   "finished"):
        table.add_column(column)
    for run in runs:
        table.add_row(str(run.run_id), run.tenant, run.workflow, _status(run.status),
                      f"{run.nodes_remaining}/{run.nodes_total}", _when(run.created_at),
                      _when(run.finished_at))
    out.print(table)


def run_detail(run: RunView) -> None:
    out.print(f"run [bold]{run.run_id}[/]  workflow {run.workflow}"
              f"{' v' + str(run.workflow_version) if run.workflow_version else ''}  "
              f"tenant {run.tenant}  status {_status(run.status)}")
    out.print(f"created {_when(run.created_at)}  started {_when(run.started_at)}  "
              f"finished {_when(run.finished_at)}")
    if run.rerun_of:
        out.print(f"rerun of run {run.rerun_of}")
    if run.error:
        out.print(f"[red]error:[/] {json.dumps(run.error)[:500]}")
    for warning in run.warnings:
        out.print(f"warning: {warning.message}", style="yellow", markup=False)
    table = Table()
    for column in ("node", "executor", "status", "attempts", "duration ms", "outputs / error"):
        table.add_column(column)
    for node in run.nodes or []:
        detail = node.error if node.status in ("failed", "cancelled") else node.outputs
        text = json.dumps(detail)[:80] if detail is not None else ""
        if node.status == "waiting":
            text = waiting_for(node)
        table.add_row(node.key + (f" [{node.items} items]" if node.items else ""),
                      node.executor, _status(node.status),
                      "-" if node.wait else f"{node.attempts}/{node.max_attempts}",
                      f"{node.duration_ms:.0f}" if node.duration_ms is not None else "-", text)
    out.print(table)


def waiting_for(node: NodeView) -> str:
    """What a waiting node waits for, and until when."""
    wait = node.wait or {}
    what = f"signal {wait['signal']!r}" if "signal" in wait else "timer"
    return f"waits for {what}" + (f" until {_when(node.wait_until)}" if node.wait_until else "")


def signal_sent(result: SignalResult) -> None:
    """`dagq signal`: what became of the signal."""
    if result.duplicate:
        print(f"signal {result.signal_id} was sent before: nothing changed", file=sys.stderr)
    elif result.delivered:
        print(f"delivered to node {result.node_key}", file=sys.stderr)
    else:
        print(f"buffered: no node waits for {result.signal!r} yet", file=sys.stderr)
    print(result.signal_id)


# How each node event moves a node on the progress bar of client mode (unknown: ignored).
NODE_EVENT_STATUS = {
    "node_queued": "queued", "node_started": "running", "node_succeeded": "succeeded",
    "node_failed": "failed", "node_retry": "queued", "node_lease_expired": "queued",
    "node_skipped": "skipped", "node_cancelled": "cancelled", "node_waiting": "waiting",
    "node_released": "queued",
}


@contextlib.contextmanager
def _progress_bar(workflow: str, total: int) -> Iterator[Callable[[Iterable[str]], None]]:
    """A live bar (nodes done / total, per-status counts); yields show(node statuses)."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total} nodes"),
               TextColumn("{task.fields[counts]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task(workflow, total=total, counts="")

        def show(statuses: Iterable[str]) -> None:
            counts = Counter(statuses)
            done = sum(counts[s] for s in TERMINAL_NODE_STATUSES)
            summary = " ".join(f"{_status(s)}={n}" for s, n in sorted(counts.items()))
            progress.update(task, completed=done, counts=summary)

        yield show


def _finished(run: RunView) -> str:
    err.print(f"run {run.run_id} {_status(run.status)}")
    if run.error:
        err.print(f"[red]error:[/] {json.dumps(run.error)[:1000]}")
    return run.status


def follow_run(repo: Any, run_id: uuid.UUID, poll_s: float = 0.2,
               warn_every_s: float = WARN_EVERY_S) -> str:
    """The progress bar until the run ends, reading the database, with a line whenever
    no live worker serves some of its waiting nodes."""
    run = repo.runs.get_run(run_id)
    unserved: set[tuple[str, str]] = set()
    next_check = 0.0
    with _progress_bar(run.workflow, len(run.nodes or [])) as show:
        while True:
            show(node.status for node in run.nodes or [])
            if run.status not in OPEN_RUN_STATUSES:
                break
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + warn_every_s
                unserved = _show_unserved(err, repo, run, unserved)
            time.sleep(poll_s)
            run = repo.runs.get_run(run_id)
    return _finished(run)


def follow_run_events(client: Any, run_id: uuid.UUID) -> str:
    """The same bar through the API (client mode), moved by the run's event stream."""
    run = client.run(run_id)
    statuses = {node.key: node.status for node in run.nodes or []}
    with _progress_bar(run.workflow, len(statuses)) as show:
        show(statuses.values())
        for warning in getattr(run, "warnings", None) or []:
            err.print(f"waiting: {warning.message}", style="yellow", markup=False)
        if run.status in OPEN_RUN_STATUSES:
            for event in client.events(run_id):
                status = NODE_EVENT_STATUS.get(event.type)
                key = getattr(event, "node_key", None)
                if status is not None and key in statuses:  # (not a mapped node's item)
                    statuses[key] = status
                    show(statuses.values())
            run = client.wait(run_id)  # the finished run, as the database path shows it
        show(node.status for node in run.nodes or [])
    return _finished(run)


def _show_unserved(console: Console, repo: Any, run: RunView,
                   shown: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Print each (executor, queue) that became unserved, and each that is served again."""
    warnings = {(w.executor, w.queue): w for w in service.run_warnings(repo, run)}
    for key in sorted(warnings.keys() - shown):
        console.print(f"waiting: {warnings[key].message}", style="yellow", markup=False)
    for executor, queue in sorted(shown - warnings.keys()):
        console.print(f"a live worker serves executor {executor} on queue {queue} again",
                      style="green", markup=False)
    return set(warnings)


def schedules_table(schedules: list[Any]) -> None:
    table = Table(title=f"{len(schedules)} schedule(s)")
    for column in ("schedule id", "tenant", "workflow", "cron", "timezone", "last fired",
                   "last run / error"):
        table.add_column(column)
    for item in schedules:
        workflow = item.workflow if isinstance(item.workflow, str) else \
            f"{item.workflow.get('name', '?')} (inline)"
        last = str(item.last_run_id) if item.last_run_id else (item.last_error or "-")
        table.add_row(str(item.schedule_id), item.tenant, workflow, item.cron, item.timezone,
                      _when(item.last_fire_at), last)
    out.print(table)


def tenants_table(tenants: list[Any]) -> None:
    table = Table(title=f"{len(tenants)} tenant(s)")
    for column in ("tenant", "weight", "max queued runs", "max running nodes", "submit rate",
                   "queued runs", "running runs", "queued nodes", "running nodes"):
        table.add_column(column)
    for t in tenants:
        table.add_row(t.name, f"{t.weight:g}", _or_none(t.max_queued_runs),
                      _or_none(t.max_running_nodes), _or_none(t.submit_rate, "/s"),
                      str(t.queued_runs or 0), str(t.running_runs or 0),
                      str(t.queued_nodes or 0), str(t.running_nodes or 0))
    out.print(table)


def _or_none(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value:g}{unit}"


def rerun_made(result: RerunResult) -> int:
    """`dagq run rerun`: the new run's id alone on stdout (what it reruns on stderr)."""
    print(f"rerun of run {result.rerun_of}: run {result.run_id}", file=sys.stderr)
    print(result.run_id)
    return 0


def schema_status(state: SchemaState) -> None:
    """`dagq db status`: one line per migration (applied, pending, or applied by a newer
    dagq), then one line saying whether this dagq may run on the schema."""
    from dagq.runtime.migrate import mismatch_message

    known = {m.version: m for m in state.known}
    rows: dict[int, str] = {}
    for applied in state.applied:
        note = "" if applied.version in known else (
            f"  (newer than this dagq; works with dagq at {applied.oldest_code:03d} "
            "or later)")
        rows[applied.version] = (f"{applied.version:03d}_{applied.name:<32} applied "
                                 f"{_when(applied.applied_at)}{note}")
    for migration in state.pending:
        rows[migration.version] = f"{migration.version:03d}_{migration.name:<32} pending"
    for version in sorted(rows):
        print(rows[version])
    at = f"this dagq is at migration {state.latest_known:03d}"
    if not state.compatible:
        print(f"schema: {mismatch_message(state)}")
    elif state.unknown:
        print(f"schema: newer than this dagq but compatible with it ({at})")
    else:
        print(f"schema: current ({at})")
