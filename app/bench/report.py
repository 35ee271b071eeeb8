"""The table `dagq bench` prints (rich)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table


def _n(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    small = isinstance(value, float) and value < 100
    text = f"{value:,.2f}" if small else f"{value:,.0f}"
    return f"{text} {unit}".rstrip()


def _mib(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:,.1f} MiB"


def _3(value: Any, unit: str = "") -> str:
    """Three decimals: the per-node CPU milliseconds and the fractions of the ceiling."""
    return f"{value:.3f} {unit}".rstrip()


def _spread(result: dict[str, Any], figure: str, unit: str,
            fmt: Callable[..., str] = _n) -> str:
    """The median repetition's figure, with the min-max of every repetition."""
    repeats = (result.get("repeats") or {}).get(figure)
    text = fmt(result[figure], unit)
    if not repeats or len(repeats["values"]) < 2:
        return text
    return f"{text} ({fmt(repeats['min'])}-{fmt(repeats['max'])})"


def print_report(r: dict[str, Any], targets: dict[str, str]) -> None:
    table = _table(r)
    if "ceiling" not in r:  # one phase alone (--phase)
        if r.get("api") is not None:
            _api_rows(table, r["api"], targets)
        else:
            _dramatiq_rows(table, r["dramatiq"], targets)
        _print(table, r)
        return
    single, batch = r["ceiling"]["single"], r["ceiling"]["batch"]

    def vs(value: float | None) -> str:
        if value is None:
            return ""
        return f"{value / single['jobs_per_s']:.2f} | {value / batch['jobs_per_s']:.2f}"

    _ceiling_rows(table, r, vs)
    _drain_rows(table, r, vs, targets)
    _latency_rows(table, r, targets)
    if r.get("stream") is not None:
        _stream_rows(table, r["stream"], targets)
    if r.get("waiting") is not None:
        waiting = r["waiting"]
        table.add_row("waiting", f"flat drain beside {waiting['waiting_runs']:,} waiting runs",
                      _n(waiting["nodes_per_s"], "nodes/s"), "", "")
        table.add_row("", "  ratio to the flat drain", f"{waiting['ratio_to_flat']:.2f}", "",
                      "~1.00")
    if r.get("subflows") is not None:
        sub = r["subflows"]
        table.add_row("subflows", f"{sub['mapped']['parents']} parents x {sub['items']} "
                      f"child runs ({sub['max_parallel']} at a time)",
                      _n(sub["mapped"]["node_tasks_per_s"], "node tasks/s"), "", "")
        table.add_row("", "  parent submit -> finished p50",
                      f"{sub['mapped']['parent_p50_ms']:,.0f} ms", "", "")
        table.add_row("", "  inlined as plain nodes",
                      _n(sub["inlined"]["node_tasks_per_s"], "node tasks/s"), "", "")
        table.add_row("", "  overhead per child run",
                      f"{sub['overhead_per_child_ms']:.2f} ms", "", "")
    if r.get("api") is not None:
        _api_rows(table, r["api"], targets)
    if r.get("big") is not None:
        _big_rows(table, r["big"], vs, targets)
    if r.get("dramatiq") is not None:
        _dramatiq_rows(table, r["dramatiq"], targets)
    if r.get("fairness") is not None:
        _fairness_rows(table, r["fairness"], targets)
    if r.get("via_pgbouncer") is not None:
        _via_rows(table, r["via_pgbouncer"])
    if r.get("via_proxy") is not None:
        _proxy_rows(table, r["via_proxy"])
    _rss_rows(table, r["worker_rss"])
    _print(table, r)


def _print(table: Table, r: dict[str, Any]) -> None:
    console = Console(width=max(Console().width, 140))
    console.print(table)
    machine = r["machine"]
    load = machine.get("load_average_1m") or {}
    git = r.get("git") or {}
    if git:
        dirty = " + local changes" if git.get("local_changes") else ""
        console.print(f"code: {git.get('commit')}{dirty}", style="dim")
    repeat = r["config"]["sizes"].get("repeat", 1)
    console.print(f"drains: the median of {repeat} repetition(s), (min-max) beside it; "
                  f"elapsed {r['elapsed_s']:.0f}s; load average {load.get('before')} before, "
                  f"{load.get('after')} after; {r['command']}", style="dim")


def _table(r: dict[str, Any]) -> Table:
    cfg, db, machine = r["config"], r["database"], r["machine"]
    table = Table(
        title=f"dagq bench — {cfg['workers']} workers x {cfg['threads']} threads, "
              f"PostgreSQL {db.get('server_version', '?')}, synchronous_commit="
              f"{db.get('synchronous_commit', '?')}, {machine['cores']} cores "
              f"({machine['cpu']})",
        title_justify="left",
    )
    table.add_column("phase")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("vs ceiling (1/tx | 100/stmt)", justify="right")
    table.add_column("target", justify="right")
    return table


def _ceiling_rows(table: Table, r: dict[str, Any], vs: Callable[[float | None], str]) -> None:
    single, batch = r["ceiling"]["single"], r["ceiling"]["batch"]
    table.add_row("ceiling", f"raw SQL, 1 row/tx, {single['connections']} conns",
                  _n(single["jobs_per_s"], "jobs/s"), "", "")
    table.add_row("", f"raw SQL, {batch['batch']} rows/stmt",
                  _n(batch["jobs_per_s"], "jobs/s"), "", "")
    notify = r["ceiling"].get("single_notify")
    if notify is not None:
        table.add_row("", "raw SQL, 1 row/tx + NOTIFY in the complete",
                      _n(notify["jobs_per_s"], "jobs/s"), vs(notify["jobs_per_s"]), "")


def _drain_rows(table: Table, r: dict[str, Any], vs: Callable[[float | None], str],
                targets: dict[str, str]) -> None:
    flat, dag = r["flat"], r["dag"]
    table.add_row("flat", f"submit {flat['submit']['runs']:,} one-node runs",
                  _n(flat["submit"]["runs_per_s"], "runs/s"), "", "", end_section=False)
    table.add_row("", f"drain ({_n(flat['seconds'], 's')})",
                  _spread(flat, "nodes_per_s", "nodes/s"), vs(flat["nodes_per_s"]),
                  targets["flat_nodes_per_s"])
    table.add_row("", "avg nodes per lease", _n(flat["avg_lease_batch"]), "", "")
    _cost_rows(table, flat.get("costs"))
    table.add_row("fan-out DAG", f"submit {dag['runs']:,} runs of 1 -> 10 -> 1",
                  _n(dag["submit"]["runs_per_s"], "runs/s"), "", "")
    table.add_row("", f"drain ({_n(dag['seconds'], 's')})",
                  _spread(dag, "node_tasks_per_s", "node tasks/s"),
                  vs(dag["node_tasks_per_s"]), targets["dag_node_tasks_per_s"])
    table.add_row("", "", _spread(dag, "runs_per_s", "runs/s"), "", "")
    table.add_row("", "avg nodes per lease", _n(dag["avg_lease_batch"]), "", "")
    _cost_rows(table, dag.get("costs"))


def _na(costs: dict[str, Any], figure: str, unit: str = "",
        fmt: Callable[..., str] = _n) -> str:
    """A cost figure with its repetitions' min-max, or "n/a" when it was not readable."""
    if costs.get(figure) is None:
        return "n/a"
    return _spread(costs, figure, unit, fmt)


def _cost_rows(table: Table, costs: dict[str, Any] | None) -> None:
    """What the drain cost per node (costs.py); nothing for a bench JSON without it."""
    if costs is None:
        return
    fpi = costs.get("wal_fpi_per_node")
    table.add_row("", "  WAL/node: records; full-page images",
                  _na(costs, "wal_records_per_node") + (f"; {_n(fpi)}" if fpi is not None
                                                        else ""), "", "")
    table.add_row("", "  WAL/node: bytes", _na(costs, "wal_bytes_per_node", "B"), "", "")
    table.add_row("", "  Postgres CPU/node",
                  _na(costs, "postgres_cpu_ms_per_node", "ms", _3), "", "")
    table.add_row("", "  worker CPU/node", _na(costs, "worker_cpu_ms_per_node", "ms", _3),
                  "", "")
    hot = costs.get("hot")
    if hot is None or not hot:
        table.add_row("", "  HOT share of updates", "n/a" if hot is None else "no updates",
                      "", "")
    for name, t in (hot or {}).items():
        table.add_row("", f"  HOT share, {name} (updates/node)",
                      f"{t['ratio']:.2f} ({_n(t['updates_per_node'])})", "", "")
    if costs.get("ceiling_fraction") is not None:
        table.add_row("", "  node tasks/s / 100 rows/stmt ceiling",
                      _spread(costs, "ceiling_fraction", "", _3), "", "")


def _latency_rows(table: Table, r: dict[str, Any], targets: dict[str, str]) -> None:
    lat_single, lat_dag = r["latency"]["single"], r["latency"]["dag"]
    table.add_row("latency (idle)",
                  f"submit -> node start, p50 ({lat_single['samples']} runs)",
                  _n(lat_single["p50_ms"], "ms"), "", targets["latency_single_p50"])
    table.add_row("", "  p99 / max", f"{_n(lat_single['p99_ms'])} / "
                  f"{_n(lat_single['max_ms'], 'ms')}", "", "")
    table.add_row("", "  submit -> run finished, p50",
                  _n(lat_single["finish_p50_ms"], "ms"), "", "")
    table.add_row("", f"submit -> aggregate start, p50 ({lat_dag['samples']} DAGs)",
                  _n(lat_dag["p50_ms"], "ms"), "", targets["latency_dag_p50"])
    table.add_row("", "  p99 / max", f"{_n(lat_dag['p99_ms'])} / "
                  f"{_n(lat_dag['max_ms'], 'ms')}", "", targets["latency_dag_p99"])
    table.add_row("", "  submit -> run finished, p50",
                  _n(lat_dag["finish_p50_ms"], "ms"), "", "")


def _via_rows(table: Table, via: dict[str, Any]) -> None:
    if "skipped" in via:
        table.add_row("via pgbouncer", f"left out: {via['skipped']}", "", "", "")
        return
    table.add_row("via pgbouncer", f"flat drain, workers through PgBouncer (pool "
                  f"{via['pool_size']})", _n(via["flat_nodes_per_s"], "nodes/s"), "", "")
    table.add_row("", "  ratio to direct (this run)", f"{via['flat_ratio']:.2f}", "",
                  via["target_ratio"])
    table.add_row("", "  per node through PgBouncer: transactions; statements",
                  _per_node(via["flat_per_node"]), "", "")
    table.add_row("", "DAG drain", _n(via["dag_node_tasks_per_s"], "node tasks/s"), "", "")
    table.add_row("", "  ratio to direct (this run)", f"{via['dag_ratio']:.2f}", "",
                  via["target_ratio"])
    table.add_row("", "  per node through PgBouncer: transactions; statements",
                  _per_node(via["dag_per_node"]), "", "")
    for key, what in (("latency_listen_direct", "LISTEN direct"),
                      ("latency_listen_off", "DAGQ_LISTEN=off")):
        lat = via[key]
        table.add_row("", f"submit -> node start p50, {what} ({lat['samples']} runs)",
                      _n(lat["p50_ms"], "ms"), "", "")


def _proxy_rows(table: Table, via: dict[str, Any]) -> None:
    delay = f"{via['delay_ms_each_way']:.0f} ms each way"
    table.add_row("via proxy", f"flat drain, workers {delay} from Postgres",
                  _n(via["flat_nodes_per_s"], "nodes/s"), "", "")
    table.add_row("", "  ratio to direct (this run)", f"{via['flat_ratio']:.2f}", "",
                  via["target_ratio"])
    table.add_row("", "DAG drain", _n(via["dag_node_tasks_per_s"], "node tasks/s"), "", "")
    table.add_row("", "  ratio to direct (this run)", f"{via['dag_ratio']:.2f}", "",
                  via["target_ratio"])
    table.add_row("", f"submit -> node start p50 ({via['latency']['samples']} runs)",
                  _n(via["latency"]["p50_ms"], "ms"), "", "")


def _per_node(cost: dict[str, float]) -> str:
    return f"{cost['transactions']:.2f}; {cost['statements']:.2f}"


def _stream_rows(table: Table, stream: dict[str, Any], targets: dict[str, str]) -> None:
    many, one = stream["many"], stream["one_node"]
    table.add_row("stream", f"{many['runs']} nodes x 20 chunks/s, {many['runs']} SSE clients: "
                  "emit -> client p50", _n(many["p50_ms"], "ms"), "", targets["stream_p50"])
    table.add_row("", "  p99 / max", f"{_n(many['p99_ms'])} / {_n(many['max_ms'], 'ms')}",
                  "", targets["stream_p99"])
    table.add_row("", "  chunks received; lost, out of order, twice",
                  f"{many['chunks']:,}; {many['lost']}, {many['out_of_order']}, "
                  f"{many['duplicates']}", "", "0, 0, 0")
    table.add_row("", f"  CPU per 1,000 chunks (all {many['cpu_cores']} cores, everything)",
                  _n(many["cpu_s_per_1k_chunks"], "CPU s"), "", "")
    table.add_row("", f"one node, {one['chunks']:,} chunks back to back",
                  _n(one["chunks_per_s"], "chunks/s"), "", "")


def _api_rows(table: Table, api: dict[str, Any], targets: dict[str, str]) -> None:
    """The bench's configuration, then (since 0.3) the front door as `dagq up` deploys
    it; the targets are the deployed one's (what users run)."""
    deployed = api.get("deployed")
    _front_door_rows(table, api, "api (bench: auth off, WARNING)",
                     {} if deployed else targets, api["processes"], api["client"])
    if deployed:
        _front_door_rows(table, deployed, "api as `dagq up` (auth on, INFO, sweeper)",
                         targets, deployed["processes"], api["client"])


def _front_door_rows(table: Table, api: dict[str, Any], phase: str,
                     targets: dict[str, str], processes: int, client: str) -> None:
    clients = sorted(int(key[1:]) for key in api if key[:1] == "c" and key[1:].isdigit())
    for i, count in enumerate(clients):
        figures = api[f"c{count}"]
        ratio = figures.get("vs_in_process")
        table.add_row(phase if i == 0 else "",
                      f"POST /v1/runs, {count} clients ({client}, {processes} API "
                      "process(es)): submits/s",
                      _spread(figures, "submits_per_s", "/s"),
                      f"{ratio:.2f} of in-process" if ratio is not None else "",
                      targets.get(f"api_c{count}_submits_per_s", ""))
        table.add_row("", "  p50 / p99; errors",
                      f"{_spread(figures, 'p50_ms', '')} / {_spread(figures, 'p99_ms', 'ms')}"
                      f"; {figures['errors']}", "", targets.get(f"api_c{count}_p99", ""))
        if figures.get("api_cpu_ms_per_submit") is not None:
            table.add_row("", "  API processes' CPU per submit",
                          _spread(figures, "api_cpu_ms_per_submit", "ms", _3), "", "")
        if figures.get("cpu_ms_per_submit") is not None:
            parts = " / ".join("-" if figures.get(f"{name}_cpu_ms_per_submit") is None
                               else _3(figures[f"{name}_cpu_ms_per_submit"])
                               for name in ("api", "postgres", "workers", "sweeper"))
            table.add_row("", "  CPU per submit: API / Postgres / workers / sweeper",
                          f"{parts}; sum {_spread(figures, 'cpu_ms_per_submit', 'ms', _3)}",
                          "", "")
            table.add_row("", "  submits/s if the cores did only that",
                          _spread(figures, "cpu_bound_submits_per_s", "/s"), "", "")


def _big_rows(table: Table, big: dict[str, Any], vs: Callable[[float | None], str],
              targets: dict[str, str]) -> None:
    table.add_row("table growth", f"flat with {big['history_rows']:,} finished rows",
                  _n(big["nodes_per_s"], "nodes/s"), vs(big["nodes_per_s"]), "")
    table.add_row("", "ratio to the empty table", f"{big['ratio_to_empty']:.2f}", "",
                  targets["big_ratio"])
    table.add_row("", "dequeue plan uses", ", ".join(big["dequeue_plan_indexes"]) or
                  "(no index)", "", "")
    _cost_rows(table, big["flat"].get("costs"))


def _rss_rows(table: Table, rss: dict[str, Any]) -> None:
    table.add_row("worker RSS", "at start (registered) -> end",
                  f"{_mib(rss['start_kb'])} -> {_mib(rss['end_kb'])}", "", "")
    table.add_row("", "peak (VmHWM)", _mib(rss["peak_kb"]), "", "")
    table.add_row("", "growth per 1,000 nodes: start -> end | 2nd half",
                  f"{_n(rss['growth_kb_per_1k_nodes'])} | "
                  f"{_n(rss['second_half_growth_kb_per_1k_nodes'], 'kB')}", "", "")


def _dramatiq_rows(table: Table, d: dict[str, Any], targets: dict[str, str]) -> None:
    send, group, drain, lat = d["send"], d["group_send"], d["drain"], d["latency"]
    table.add_row("dramatiq", f"actor.send() x {send['messages']:,}, one producer thread",
                  _n(send["sends_per_s"], "sends/s"), "",
                  targets.get("dramatiq_sends_per_s", ""))
    if d.get("send_floor"):
        table.add_row("", "  the floor: one-row INSERT committed per call, one connection",
                      _n(d["send_floor"]["rows_per_s"], "rows/s"), "", "")
    table.add_row("", f"  group of {group['batch']} (enqueue_many, one statement)",
                  _n(group["sends_per_s"], "sends/s"), "", "")
    table.add_row("", f"drain, {d['workers']} workers x {d['threads']} threads "
                  f"({_n(drain['seconds'], 's')})", _n(drain["messages_per_s"], "msgs/s"),
                  "", "")
    table.add_row("", f"idle send -> start, p50 ({lat['samples']} messages)",
                  _n(lat["p50_ms"], "ms"), "", targets.get("dramatiq_latency_p50", ""))
    table.add_row("", "  p99 / max", f"{_n(lat['p99_ms'])} / {_n(lat['max_ms'], 'ms')}",
                  "", "")
    _redis_rows(table, d.get("redis") or {}, drain["messages_per_s"], targets)


REDIS_MODES = {"redis_default": "Redis' default persistence",
               "redis_fsync_always": "appendfsync always"}


def _redis_rows(table: Table, redis: dict[str, Any], drain_per_s: float,
                targets: dict[str, str]) -> None:
    if "skipped" in redis:
        table.add_row("", "Dramatiq + Redis: not measured", redis["skipped"], "", "")
    for mode, label in REDIS_MODES.items():
        if mode not in redis:
            continue
        side = redis[mode]
        table.add_row("", f"Dramatiq + Redis ({label}): actor.send()",
                      _n(side["send"]["sends_per_s"], "sends/s"), "", "")
        table.add_row("", "  its drain, same workers x threads",
                      _n(side["drain"]["messages_per_s"], "msgs/s"), "", "")
        table.add_row("", "  dagq's drain / this one",
                      f"{drain_per_s / side['drain']['messages_per_s']:.2f}", "",
                      targets.get("dramatiq_drain_vs_redis", ""))


def _fairness_rows(table: Table, f: dict[str, Any], targets: dict[str, str]) -> None:
    beside = f["beside"]
    alone = f["alone"]
    table.add_row("fairness", f"{f['big_runs']:,} one-node runs of one tenant, alone "
                  "(mean of the drains before and after)",
                  _n(alone["nodes_per_s"], "nodes/s"), "", "")
    if "first_nodes_per_s" in alone:
        table.add_row("", "  alone before / after", f"{_n(alone['first_nodes_per_s'])} / "
                      f"{_n(alone['second_nodes_per_s'], 'nodes/s')}", "", "")
    table.add_row("", f"  the same beside {beside['small_runs']:,} runs of a small tenant "
                  "(one per 50 ms)", _n(beside["nodes_per_s"], "nodes/s"), "", "")
    table.add_row("", "  ratio to alone", f"{f['drain_ratio']:.2f}", "",
                  targets.get("fairness_drain_ratio", ""))
    table.add_row("", "  small tenant submit -> start p50",
                  _n(beside["small_submit_to_start_p50_ms"], "ms"), "", "")
    table.add_row("", "  small tenant submit -> start p99",
                  _n(beside["small_submit_to_start_p99_ms"], "ms"), "",
                  targets.get("fairness_small_p99", ""))


def print_fairness(r: dict[str, Any], targets: dict[str, str]) -> None:
    """`dagq bench --phase fairness`: that phase's rows alone."""
    table = Table(title="dagq bench — fairness", show_lines=False)
    for column in ("phase", "what", "measured", "", "target"):
        table.add_column(column)
    _fairness_rows(table, r["fairness"], targets)
    console = Console(width=max(Console().width, 140))
    console.print(table)
    load = r["machine"].get("load_average_1m") or {}
    console.print(f"elapsed {r['elapsed_s']:.0f}s; load average {load.get('before')} before, "
                  f"{load.get('after')} after; {r['command']}", style="dim")
