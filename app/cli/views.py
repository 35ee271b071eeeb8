"""What the CLI shows people: run tables, node tables and a live progress bar."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from dagq.cli.summary import error_lines, one_line
from dagq.models import (
    ApiKeyRecord,
    NodeView,
    RerunResult,
    ResolveResult,
    RunEvent,
    RunView,
    RunWarning,
    SignalResult,
    WorkflowRecord,
)
from dagq.states import TERMINAL_NODE_STATUSES

if TYPE_CHECKING:
    from dagq.api.schemas import RunSummary
    from dagq.runtime.migrate import SchemaState

COLOURS = {"succeeded": "green", "failed": "red", "partial_succeeded": "yellow",
           "cancelled": "magenta", "running": "cyan", "queued": "blue", "pending": "white",
           "skipped": "bright_black", "waiting": "bright_yellow"}

out = Console()
err = Console(stderr=True)


def _status(status: str) -> str:
    return f"[{COLOURS.get(status, 'white')}]{status}[/]"


def when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


_when = when


def print_json(document: Any) -> None:
    """`--json`: one JSON document on stdout."""
    print(json.dumps(document, indent=2))


# Below this many columns the runs table leaves out the tenant and the times (the whole
# run id, what people copy, takes 36; the rows stay newest first): `--json` and a wider
# terminal have every field.
WIDE_TABLE = 110


def runs_table(runs: Sequence[RunView | RunSummary]) -> None:
    wide = out.width >= WIDE_TABLE
    table = Table(title=f"{len(runs)} run(s), newest first", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    # The whole id, never squeezed to "f5dc8e…" in a narrow terminal: it is what people
    # copy (a unique prefix of it is accepted too).
    table.add_column("run id", no_wrap=True, min_width=36)
    if wide:
        table.add_column("tenant", overflow="fold")
    # The workflow's name keeps room to be read (the times fold onto a second line first).
    table.add_column("workflow", overflow="fold", min_width=14)
    table.add_column("status", no_wrap=True)
    table.add_column("nodes left" if wide else "nodes", no_wrap=True)
    if wide:
        table.add_column("created", overflow="fold")
        table.add_column("finished", overflow="fold")
    for run in runs:
        # (Text: a tenant's name is shown as it is, never read as markup)
        cells = [str(run.run_id), Text(run.tenant), Text(run.workflow), _status(run.status),
                 f"{run.nodes_remaining}/{run.nodes_total}", _when(run.created_at),
                 _when(run.finished_at)]
        table.add_row(*(cells if wide else cells[:1] + cells[2:5]))
    out.print(table)


def run_detail(run: RunView, *, verbose: bool = False) -> None:
    """A run and its nodes; a failed node's error as a short summary (its user frames
    first), or whole with `verbose`."""
    out.print(f"run [bold]{run.run_id}[/]  workflow {escape(run.workflow)}"
              f"{' v' + str(run.workflow_version) if run.workflow_version else ''}  "
              f"tenant {escape(run.tenant)}  status {_status(run.status)}")
    out.print(f"created {_when(run.created_at)}  started {_when(run.started_at)}  "
              f"finished {_when(run.finished_at)}")
    if run.rerun_of:
        out.print(f"rerun of run {run.rerun_of}")
    if run.metadata:  # by key (jsonb keeps its own order: shorter keys first)
        out.print("metadata " + "  ".join(
            f"{key}={value if isinstance(value, str) else json.dumps(value)}"
            for key, value in sorted(run.metadata.items())), markup=False)
    if run.error and not verbose:
        for line in error_lines(run.error):
            out.print(f"error: {line}" if not line.startswith(" ") else line,
                      style="red", markup=False, overflow="fold")
    for warning in run.warnings:
        out.print(f"warning: {warning.message}", style="yellow", markup=False)
    table = Table()
    for column in ("node", "executor", "status", "attempts", "duration ms", "outputs / error"):
        table.add_column(column)
    for node in run.nodes or []:
        failed = node.status in ("failed", "cancelled")
        detail = node.error if failed else node.outputs
        text = one_line(detail) if failed else \
            json.dumps(detail)[:80] if detail is not None else ""
        if node.status == "waiting":
            text = waiting_for(node)
        # (Text: outputs and errors are the tenant's, shown as they are, never as markup)
        table.add_row(Text(node.key + (f" [{node.items} items]" if node.items else "")),
                      Text(node.executor), _status(node.status),
                      "-" if node.wait else f"{node.attempts}/{node.max_attempts}",
                      f"{node.duration_ms:.0f}" if node.duration_ms is not None else "-",
                      Text(text))
    out.print(table)
    _node_errors(run, verbose)


def _node_errors(run: RunView, verbose: bool) -> None:
    """Below the table: each failed node's error (the summary, or all of it)."""
    failed = [n for n in run.nodes or [] if n.status == "failed" and n.error]
    if verbose:
        for label, error in ([("run", run.error)] if run.error else []) + [
                (f"node {n.key}", n.error) for n in failed]:
            out.print(f"{label} error:", style="red", markup=False)
            text = error.get("traceback") if isinstance(error, dict) else None
            rest = {k: v for k, v in error.items() if k != "traceback"} \
                if isinstance(error, dict) else error
            out.print(json.dumps(rest, indent=2), markup=False, overflow="fold")
            if text:
                out.print(text.rstrip(), markup=False, overflow="fold")
        return
    for node in failed:
        if isinstance(run.error, dict) and run.error.get("node") == node.key:
            continue  # shown above, as the run's error
        for line in error_lines(node.error, node.key):
            out.print(line, style="red", markup=False, overflow="fold")
    if failed or run.error:
        out.print("(--verbose: the errors whole)", style="bright_black", markup=False)


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


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A run as `submit --wait` shows it: the run, its nodes' statuses now, and the
    executors and queues no live worker serves (None: not looked at this time)."""

    run: RunView
    statuses: list[str]
    unserved: list[RunWarning] | None = None


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


def follow_run(snapshots: Iterator[Snapshot]) -> str:
    """The progress bar until the run ends (the backend says when: its snapshots end),
    with a line whenever an executor and queue of the run become unserved or served
    again; returns the run's final status."""
    last = next(snapshots)
    shown: set[tuple[str, str]] = set()
    with _progress_bar(last.run.workflow, len(last.statuses)) as show:
        for snapshot in itertools.chain([last], snapshots):
            show(snapshot.statuses)
            if snapshot.unserved is not None:
                shown = _show_unserved(err, snapshot.unserved, shown)
            last = snapshot
    return _finished(last.run)


def _show_unserved(console: Console, unserved: list[RunWarning],
                   shown: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Print each (executor, queue) that became unserved, and each that is served again."""
    warnings = {(w.executor, w.queue): w for w in unserved}
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


def bulk_done(action: str, acted: int, skipped_by: dict[str, int]) -> None:
    """`dagq runs cancel|retry|rerun`: the totals."""
    verb = {"cancel": "cancelled", "retry": "retried", "rerun": "reran"}[action]
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(skipped_by.items()))
    print(f"{verb} {acted} run(s); skipped {sum(skipped_by.values())}"
          f"{f' ({reasons})' if reasons else ''}")


def run_acted(action: str, run_id: Any, status: str) -> int:
    """`dagq run cancel|retry`: what the run is now."""
    verb = "cancelled" if action == "cancel" else "retried"
    print(f"{verb} run {run_id}: it is {status}")
    return 0


def node_resolved(result: ResolveResult) -> int:
    """`dagq run resolve`: the node and what its run is now."""
    print(f"resolved node {result.node_key!r} of run {result.run_id}: it is "
          f"{result.status}; the run is {result.run_status}")
    return 0


def events_list(events: Iterable[RunEvent], *, as_json: bool) -> int:
    """`dagq run events`: one line per event, or (--json) the API's list of events."""
    if as_json:
        print_json([event.model_dump(mode="json") for event in events])
        return 0
    for event in events:
        where = f" {event.node_key}" if event.node_key else ""
        tries = f" (try {event.attempt})" if event.attempt else ""
        error = event.data.get("error") if isinstance(event.data, dict) else None
        detail = f": {one_line(error, 100)}" if error else ""
        print(f"{event.id:>8}  {when(event.created_at)}  {event.type}{where}{tries}{detail}")
    return 0


def workflows_table(workflows: Sequence[WorkflowRecord]) -> None:
    table = Table(title=f"{len(workflows)} workflow(s)")
    for column in ("name", "version", "nodes", "registered"):
        table.add_column(column)
    for item in workflows:
        nodes = item.spec.get("nodes") if isinstance(item.spec, dict) else None
        table.add_row(item.name, str(item.version),
                      str(len(nodes)) if isinstance(nodes, dict) else "-",
                      when(item.created_at))
    out.print(table)


def workflow_detail(workflow: WorkflowRecord) -> None:
    """`dagq workflows show`: the name and version, then the spec as JSON."""
    print(f"workflow {workflow.name} v{workflow.version} (registered "
          f"{when(workflow.created_at)})")
    print(json.dumps(workflow.spec, indent=2))


def keys_table(keys: Sequence[ApiKeyRecord]) -> None:
    """`dagq keys list`: never a key or its hash (neither is known here)."""
    table = Table(title=f"{len(keys)} key(s)")
    table.add_column("key id", no_wrap=True, min_width=36)
    for column in ("tenant", "admin", "created", "revoked", "revoked by"):
        table.add_column(column)
    for key in keys:
        table.add_row(str(key.id), key.tenant, "yes" if key.admin else "no",
                      when(key.created_at), when(key.revoked_at), key.revoked_by or "-")
    out.print(table)


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
