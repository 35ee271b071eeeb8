"""The bench's /proc reading (dagq.bench.procstat): on a fake /proc tree under tmp_path,
and on this process's own entry."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dagq.bench import procstat


def stat_line(pid: int, comm: str, ppid: int, utime: int, stime: int, cutime: int = 0,
              cstime: int = 0, starttime: int = 1000) -> str:
    """A /proc/<pid>/stat line (52 fields, as Linux 6 writes them)."""
    after = ["S", str(ppid), str(pid), str(pid), "0", "-1", "4194560", "100", "0", "0",
             "0", str(utime), str(stime), str(cutime), str(cstime), "20", "0", "1", "0",
             str(starttime)] + ["0"] * 30
    return f"{pid} ({comm}) {' '.join(after)}\n"


def fake_proc(root: Path, lines: dict[int, str], btime: int = 1_700_000_000) -> Path:
    for pid, line in lines.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "stat").write_text(line)
    (root / "stat").write_text(f"cpu  1 2 3 4\nbtime {btime}\nprocesses 5\n")
    (root / "self").mkdir(exist_ok=True)  # not a pid: skipped
    return root


def test_a_stat_line_is_parsed_after_the_last_parenthesis() -> None:
    # comm may hold spaces and parentheses ("postgres: bench (x) idle" style titles)
    parsed = procstat.parse_stat(stat_line(42, "pg (x) y) z", ppid=7, utime=11, stime=5,
                                           cutime=3, cstime=2, starttime=987))
    assert parsed == procstat.ProcStat(pid=42, comm="pg (x) y) z", ppid=7, utime=11,
                                       stime=5, cutime=3, cstime=2, starttime=987)
    assert (parsed.own_ticks, parsed.with_reaped_ticks) == (16, 21)


@pytest.mark.parametrize("line", ["", "12 no parentheses S 1", "12 (short) S 1 2 3"])
def test_a_line_that_is_not_a_stat_line_is_a_clear_error(line: str) -> None:
    with pytest.raises(ValueError, match="/proc stat line"):
        procstat.parse_stat(line)


def test_a_tree_counts_its_reaped_children_and_its_live_ones_once(tmp_path: Path) -> None:
    root = fake_proc(tmp_path, {
        100: stat_line(100, "postgres", 1, utime=50, stime=20, cutime=300, cstime=30),
        101: stat_line(101, "postgres: bench", 100, utime=7, stime=3, cutime=99, cstime=99),
        102: stat_line(102, "postgres: walwriter", 100, utime=1, stime=1),
        200: stat_line(200, "other", 1, utime=1000, stime=1000),
        201: stat_line(201, "grandchild", 101, utime=500, stime=500),
    })
    (root / "300").mkdir()
    (root / "300" / "stat").write_text("garbage")  # a process mid-exit: skipped
    # 50+20+300+30 own and reaped; 7+3 and 1+1 live children (their own reaped
    # children are not the tree's until the child is reaped)
    assert procstat.tree_ticks([100], root) == 400 + 10 + 2
    assert procstat.tree_ticks([100, 200], root) == 412 + 2000
    assert sorted(procstat.children_of(100, root)) == [101, 102]
    assert procstat.children_of(201, root) == []


def test_a_gone_process_gives_no_figure_rather_than_a_partial_one(tmp_path: Path) -> None:
    root = fake_proc(tmp_path, {100: stat_line(100, "w", 1, utime=5, stime=5)})
    assert procstat.tree_ticks([100, 101], root) is None
    assert procstat.tree_ticks([], root) is None
    assert procstat.read_stat(999, root) is None


def test_a_child_reaped_inside_the_window_moves_its_time_to_cutime(tmp_path: Path) -> None:
    """Before: the child is alive with 40 ticks; after: it exited with 60 and its parent
    reaped it. The window's CPU is the parent's 5 more ticks and the child's 20."""
    before = procstat.tree_ticks([10], fake_proc(tmp_path / "a", {
        10: stat_line(10, "postmaster", 1, utime=100, stime=0),
        11: stat_line(11, "backend", 10, utime=30, stime=10)}))
    after = procstat.tree_ticks([10], fake_proc(tmp_path / "b", {
        10: stat_line(10, "postmaster", 1, utime=105, stime=0, cutime=50, cstime=10)}))
    assert (before, after) == (140, 165)
    assert procstat.ticks_delta_ms(before, after) == pytest.approx(
        25 * 1000 / os.sysconf("SC_CLK_TCK"))
    assert procstat.ticks_delta_ms(None, after) is None
    assert procstat.ticks_delta_ms(before, None) is None


def test_start_time_is_boot_time_plus_ticks(tmp_path: Path) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    root = fake_proc(tmp_path, {5: stat_line(5, "p", 1, 0, 0, starttime=30 * ticks)},
                     btime=1_700_000_000)
    stat = procstat.read_stat(5, root)
    assert stat is not None
    assert procstat.boot_time(root) == 1_700_000_000
    assert procstat.started_at(stat, root) == pytest.approx(1_700_000_030)
    (root / "stat").write_text("cpu 1 2 3\n")  # no btime line
    assert procstat.started_at(stat, root) is None


def test_this_process_real_entry() -> None:
    me = procstat.read_stat(os.getpid())
    assert me is not None and me.pid == os.getpid() and me.ppid == os.getppid()
    begun = procstat.started_at(me)
    assert begun is not None and begun <= time.time() + 1
    before = procstat.tree_ticks([os.getpid()])
    # a child that burns 0.3 s of CPU and is reaped (subprocess.run waits): its time
    # reaches this process's cutime/cstime
    subprocess.run([sys.executable, "-c", "import time\nwhile time.process_time() < 0.3: "
                    "pass"], check=True, timeout=60)
    after = procstat.tree_ticks([os.getpid()])
    assert before is not None and after is not None
    assert procstat.ticks_delta_ms(before, after) >= 250  # type: ignore[operator]
