"""What a drain cost per node (dagq.bench.costs): the delta math between two readings,
how repetitions carry it, and how the report and `--compare` show it, also beside a
bench JSON from before these figures."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest
from rich.console import Console
from rich.table import Table

from dagq.bench import compare, report
from dagq.bench.costs import Reading, per_node_figures
from dagq.bench.run import _against_ceiling, _median_repetition

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def reading(records: int, fpi: int, wal_bytes: int, updates: dict[str, tuple[int, int]],
            ticks: int | None) -> Reading:
    return Reading(wal={"wal_records": records, "wal_fpi": fpi, "wal_bytes": wal_bytes},
                   updates=updates, postgres_ticks=ticks)


def test_per_node_figures_are_the_readings_differences_over_the_nodes() -> None:
    before = reading(1_000, 10, 100_000, {"node_tasks": (50, 10), "runs": (7, 7),
                                          "workers": (3, 3)}, ticks=500)
    after = reading(1_000 + 38_500, 10 + 400, 100_000 + 5_008_000,
                    {"node_tasks": (50 + 2_000, 10 + 500), "runs": (7 + 2_000, 7),
                     "workers": (3, 3), "new_table": (4, 4)}, ticks=500 + 30)
    figures = per_node_figures(before, after, [100, 140], nodes=1_000)
    assert figures == {
        "nodes": 1_000, "wal_records_per_node": 38.5, "wal_fpi_per_node": 0.4,
        "wal_bytes_per_node": 5_008, "postgres_cpu_ms_per_node": round(30 * TICK_MS / 1000, 3),
        "worker_cpu_ms_per_node": round(40 * TICK_MS / 1000, 3),
        "hot": {  # only the tables updated in between; a table new since: from zero
            "new_table": {"updates": 4, "hot_updates": 4, "ratio": 1.0,
                          "updates_per_node": 0.0},
            "node_tasks": {"updates": 2_000, "hot_updates": 500, "ratio": 0.25,
                           "updates_per_node": 2.0},
            "runs": {"updates": 2_000, "hot_updates": 0, "ratio": 0.0,
                     "updates_per_node": 2.0},
        },
    }


def test_a_figure_either_reading_lacks_is_none() -> None:
    """No pg_stat_wal (PostgreSQL 13), no readable server process, a worker gone."""
    before = Reading(wal=None, updates=None, postgres_ticks=None)
    after = reading(10, 0, 10, {"runs": (5, 5)}, ticks=7)
    figures = per_node_figures(before, after, [None, 5], nodes=10)
    assert figures == {"nodes": 10, "wal_records_per_node": None, "wal_fpi_per_node": None,
                       "wal_bytes_per_node": None, "postgres_cpu_ms_per_node": None,
                       "worker_cpu_ms_per_node": None, "hot": None}
    assert per_node_figures(after, after, [5, 5], nodes=0)["wal_records_per_node"] is None


def drain(rate: float, records: float | None, cpu: float | None) -> dict[str, Any]:
    return {"nodes_per_s": rate, "avg_lease_batch": 10.0, "seconds": 1.0,
            "costs": {"wal_records_per_node": records, "wal_bytes_per_node": 5_000,
                      "wal_fpi_per_node": 0.1, "postgres_cpu_ms_per_node": cpu,
                      "worker_cpu_ms_per_node": 0.2, "hot": {}}}


def test_repetitions_keep_every_cost_figure_and_the_fraction_of_the_ceiling() -> None:
    runs = [drain(1_000, 40.0, None), drain(3_000, 38.0, 0.3), drain(2_000, 39.0, 0.5)]
    for r in runs:
        _against_ceiling(r, r["nodes_per_s"], {"jobs_per_s": 20_000})
    chosen = _median_repetition(runs, lambda r: r["nodes_per_s"], ("nodes_per_s",))
    costs = chosen["costs"]
    assert (chosen["nodes_per_s"], costs["ceiling_fraction"]) == (2_000, 0.1)
    assert costs["repeats"]["wal_records_per_node"] == {
        "median": 39.0, "min": 38.0, "max": 40.0, "values": [40.0, 38.0, 39.0]}
    # one repetition could not read the CPU: the others' values, not a None among them
    assert costs["repeats"]["postgres_cpu_ms_per_node"]["values"] == [0.3, 0.5]
    assert costs["repeats"]["ceiling_fraction"]["values"] == [0.05, 0.15, 0.1]


def rendered(costs: dict[str, Any] | None) -> str:
    table = Table()
    for column in ("phase", "figure", "value", "vs", "target"):
        table.add_column(column)
    report._cost_rows(table, costs)
    out = io.StringIO()
    Console(file=out, width=200).print(table)
    return out.getvalue()


def test_the_report_shows_a_block_per_drain_and_says_n_a() -> None:
    measured = drain(2_000, 38.5, 0.0123)["costs"]
    measured["hot"] = {"node_tasks": {"ratio": 0.25, "updates_per_node": 2.0}}
    measured["ceiling_fraction"] = 0.065
    text = rendered(measured)
    assert "38.50; 0.10" in text and "5,000 B" in text and "0.012 ms" in text
    assert "HOT share, node_tasks" in text and "0.25 (2.00)" in text
    assert "0.065" in text
    unreadable = rendered({**measured, "wal_records_per_node": None,
                           "postgres_cpu_ms_per_node": None, "hot": None})
    assert unreadable.count("n/a") == 3
    assert rendered(None).count("WAL") == 0  # a JSON from before these figures


def bench_json(rate: float, costs: dict[str, Any] | None) -> dict[str, Any]:
    flat: dict[str, Any] = {"nodes_per_s": rate, "submit": {"runs_per_s": 1.0}}
    if costs is not None:
        flat["costs"] = costs
    return {"flat": flat, "ratios": {"flat_vs_ceiling_batch": rate / 10_000},
            "git": {"commit": "abc"}}


def compared(this: dict[str, Any], ref: dict[str, Any], capsys: Any) -> str:
    compare._print({"this": [this], "REF": [ref]}, "REF")
    return str(capsys.readouterr().out)


def test_compare_shows_cost_rows_only_when_both_sides_measured_them(
        capsys: pytest.CaptureFixture[str]) -> None:
    costs = {"wal_records_per_node": 8.0, "wal_bytes_per_node": 1_000,
             "postgres_cpu_ms_per_node": 0.1, "worker_cpu_ms_per_node": None,
             "hot": {"node_tasks": {"ratio": 0.9}, "runs": {"ratio": 0.5}}}
    old = {"wal_records_per_node": 32.0, "wal_bytes_per_node": 4_000,
           "postgres_cpu_ms_per_node": 0.4, "worker_cpu_ms_per_node": 0.2,
           "hot": {"node_tasks": {"ratio": 0.0}, "runs": {"ratio": 0.5}}}
    text = compared(bench_json(4_000, costs), bench_json(2_000, old), capsys)
    lines = {line.split("│")[1].strip(): line for line in text.splitlines()
             if line.count("│") >= 4}
    assert "0.250" in lines["flat WAL records/node"]  # 8 / 32
    assert "0.250" in lines["flat Postgres CPU ms/node"]
    assert "+0.900" in lines["flat HOT share of node_tasks updates"]  # a delta
    assert "+0.000" in lines["flat HOT share of runs updates"]
    assert "2.000" in lines["flat drain / 100 rows/stmt ceiling"]
    assert "flat worker CPU ms/node" not in lines  # this side could not read it
    # an older commit's bench has no costs: no cost row, the rest as before
    text = compared(bench_json(4_000, costs), bench_json(2_000, None), capsys)
    assert "WAL" not in text and "HOT" not in text and "flat drain, nodes/s" in text
    assert "flat drain / 100 rows/stmt ceiling" in text  # both have the ratios
