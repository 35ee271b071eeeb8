"""`dagq bench --compare REF`: this checkout against another commit, run alternately.

REF is checked out in a temporary git worktree and installed (editable, with the
embedded extra) into a venv of its own, so either side may have any layout. The two
benches then run one after the other, this code first (A B A B ...), each on its own
fresh database, and the headline figures are printed side by side with their ratios.
Alternating spreads the machine's drift (load, thermal, page cache) over both sides,
which is what makes a hot-path change's figure comparable to noise.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from dagq.errors import DagqError

# (label, path in the bench's JSON, higher is better)
FIGURES: list[tuple[str, tuple[str, ...], bool]] = [
    ("flat drain, nodes/s", ("flat", "nodes_per_s"), True),
    ("flat submit, runs/s", ("flat", "submit", "runs_per_s"), True),
    ("DAG drain, node tasks/s", ("dag", "node_tasks_per_s"), True),
    ("submit -> node start p50, ms", ("latency", "single", "p50_ms"), False),
    ("submit -> aggregate start p50, ms", ("latency", "dag", "p50_ms"), False),
    ("submit -> aggregate start p99, ms", ("latency", "dag", "p99_ms"), False),
    ("ceiling 1 row/tx, jobs/s", ("ceiling", "single", "jobs_per_s"), True),
    ("stream emit -> SSE client p50, ms", ("stream", "many", "p50_ms"), False),
    ("stream, one node, chunks/s", ("stream", "one_node", "chunks_per_s"), True),
    ("flat beside waiting runs, nodes/s", ("waiting", "nodes_per_s"), True),
    ("api, 50 clients, submits/s", ("api", "c50", "submits_per_s"), True),
    ("api, 50 clients, p99 ms", ("api", "c50", "p99_ms"), False),
    ("api, 200 clients, submits/s", ("api", "c200", "submits_per_s"), True),
    ("api, 50 clients, API CPU ms/submit", ("api", "c50", "api_cpu_ms_per_submit"), False),
    ("api as dagq up, 50 clients, submits/s", ("api", "deployed", "c50", "submits_per_s"),
     True),
    ("api as dagq up, 50 clients, p99 ms", ("api", "deployed", "c50", "p99_ms"), False),
    ("api as dagq up, 200 clients, submits/s",
     ("api", "deployed", "c200", "submits_per_s"), True),
    ("api as dagq up, 50 clients, API CPU ms/submit",
     ("api", "deployed", "c50", "api_cpu_ms_per_submit"), False),
    ("plain actor.send(), one thread, sends/s", ("dramatiq", "send", "sends_per_s"), True),
    ("  the floor, one-row commits/s", ("dramatiq", "send_floor", "rows_per_s"), True),
    ("plain group of 500, sends/s", ("dramatiq", "group_send", "sends_per_s"), True),
    ("plain-actor drain, messages/s", ("dramatiq", "drain", "messages_per_s"), True),
    # (an older bench drained 20,000: compare rates of the same count only)
    ("  messages drained", ("dramatiq", "drain", "messages"), True),
    ("plain send -> start p50, ms", ("dramatiq", "latency", "p50_ms"), False),
]


def _costs(phase: str, label: str) -> list[tuple[str, tuple[str, ...], str]]:
    """What a drain cost per node (costs.py), as (label, path, "ratio" | "delta")."""
    return [
        (f"{label} WAL records/node", (phase, "costs", "wal_records_per_node"), "ratio"),
        (f"{label} WAL bytes/node", (phase, "costs", "wal_bytes_per_node"), "ratio"),
        (f"{label} Postgres CPU ms/node", (phase, "costs", "postgres_cpu_ms_per_node"),
         "ratio"),
        (f"{label} worker CPU ms/node", (phase, "costs", "worker_cpu_ms_per_node"), "ratio"),
        (f"{label} HOT share of node_tasks updates",
         (phase, "costs", "hot", "node_tasks", "ratio"), "delta"),
        (f"{label} HOT share of runs updates", (phase, "costs", "hot", "runs", "ratio"),
         "delta"),
        (f"{label} drain / 100 rows/stmt ceiling", ("ratios", f"{phase}_vs_ceiling_batch"),
         "ratio"),
    ]


# Shown only when both sides measured them (an older bench has no cost figures, and a
# "-" beside every one of them would bury the rows both sides have): ratio this / ref,
# or for a share (HOT) the difference this - ref.
COST_ROWS = _costs("flat", "flat") + _costs("dag", "DAG")


def run_compare(args: Any, bench_argv: list[str]) -> int:
    """Run `dagq bench BENCH_ARGV` here and at `args.compare`, `args.rounds` times each."""
    root = Path(__file__).resolve().parents[2]  # the checkout: app/bench/compare.py
    with tempfile.TemporaryDirectory(prefix="dagqc-", dir="/tmp") as tmp:
        other = _install_ref(root, args.compare, Path(tmp))
        try:
            return _alternate(args, bench_argv, root, other)
        finally:
            _git(root, "worktree", "remove", "--force", str(other / "src"))


def _alternate(args: Any, bench_argv: list[str], root: Path, tmp: Path) -> int:
    here = [sys.executable, "-c", "from dagq.cli import main; raise SystemExit(main())"]
    sides = {"this": (here, root),
             args.compare: ([str(tmp / "venv" / "bin" / "dagq")], tmp / "src")}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for round_no in range(args.rounds):
        for index, (name, (command, cwd)) in enumerate(sides.items()):
            out = tmp / f"side{index}-{round_no}.json"
            print(f"round {round_no + 1}/{args.rounds}: {name}", file=sys.stderr)
            done = subprocess.run([*command, "bench", *bench_argv, "--json", str(out)],
                                  cwd=cwd, stdout=subprocess.DEVNULL, check=False)
            if done.returncode != 0:
                raise DagqError(f"the bench of {name} failed (exit {done.returncode})")
            results[name].append(json.loads(out.read_text()))
    _print(results, args.compare)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


def _install_ref(root: Path, ref: str, tmp: Path) -> Path:
    """A worktree of `ref` under tmp/src and a venv with it installed under tmp/venv."""
    source = tmp / "src"
    _git(root, "worktree", "add", "--detach", "--quiet", str(source), ref)
    try:
        venv.create(tmp / "venv", with_pip=True)
        pip = [str(tmp / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet",
               "--disable-pip-version-check"]
        # Before 0.2 the embedded server was a plain dependency, not an extra.
        has_extra = "\nembedded = [" in (source / "pyproject.toml").read_text()
        extras = "[embedded]" if has_extra else ""
        done = subprocess.run([*pip, "-e", f"{source}{extras}"], capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            raise DagqError(f"could not install {ref}: {done.stderr.strip()[-500:]}")
    except BaseException:
        _git(root, "worktree", "remove", "--force", str(source))
        raise
    return tmp


def _git(root: Path, *args: str) -> None:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise DagqError(f"git {' '.join(args[:2])} failed: {done.stderr.strip()}")


def _values(result: dict[str, Any], path: tuple[str, ...]) -> list[float]:
    """The figure at `path`: every repetition's value when the bench repeated the phase
    (`repeats`, since 0.2), else the one value (an older bench)."""
    node: Any = result
    for key in path[:-1]:
        if not isinstance(node, dict) or key not in node:
            return []
        node = node[key]
    if not isinstance(node, dict):
        return []
    repeated = (node.get("repeats") or {}).get(path[-1]) or {}
    if repeated.get("values"):
        return [float(v) for v in repeated["values"]]
    value = node.get(path[-1])
    return [float(value)] if isinstance(value, int | float) else []


def _sides(results: dict[str, list[dict[str, Any]]], ref: str,
           path: tuple[str, ...]) -> tuple[list[str], list[float | None]]:
    """Each side's cell (median, min-max over every run) and median; "-" and None for
    a side that did not measure the figure."""
    cells: list[str] = []
    medians: list[float | None] = []
    for name in ("this", ref):
        values = [v for r in results[name] for v in _values(r, path)]
        if not values:
            cells.append("-")
            medians.append(None)
            continue
        median = statistics.median(values)
        medians.append(median)
        cells.append(f"{median:,.3f} ({min(values):,.3f}-{max(values):,.3f})"
                     if median < 1 else
                     f"{median:,.2f} ({min(values):,.2f}-{max(values):,.2f})")
    return cells, medians


def _ratio(medians: list[float | None]) -> str:
    this, other = medians
    return f"{this / other:.3f}" if this is not None and other else "-"


def _print(results: dict[str, list[dict[str, Any]]], ref: str) -> None:
    table = Table(title=f"dagq bench: this checkout vs {ref}, alternating",
                  title_justify="left")
    for column in ("figure", "this (median, min-max)", f"{ref} (median, min-max)",
                   "this / ref"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for label, path, _higher in FIGURES:
        cells, medians = _sides(results, ref, path)
        if medians == [None, None]:  # a phase neither side ran (--phase)
            continue
        table.add_row(label, *cells, _ratio(medians))
    for label, path, how in COST_ROWS:
        cells, medians = _sides(results, ref, path)
        if None in medians:
            continue
        this, other = medians
        assert this is not None and other is not None
        table.add_row(label, *cells, f"{this - other:+.3f}" if how == "delta"
                      else _ratio(medians))
    console = Console(width=max(Console().width, 120))
    console.print(table)
    commits = {name: [(r.get("git") or {}).get("commit") for r in runs]
               for name, runs in results.items()}
    console.print(f"commits: {commits}", style="dim")
