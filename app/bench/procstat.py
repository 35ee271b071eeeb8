"""CPU time of process trees from /proc, for `dagq bench`'s per-node CPU figures.

A process's CPU over a window is the difference of two readings of
utime + stime + cutime + cstime (its own time, and that of the children it reaped)
plus the utime + stime of each child still alive: a child that exits and is reaped
within the window moves its time from the second term into the parent's cutime, so
nothing is counted twice or lost (bar a child reaped between the two reads of one
reading, a few milliseconds). Grandchildren count once their parent reaped them.

Every function takes the /proc root as a parameter, so the tests parse a fake tree.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


def clock_ticks() -> int:
    """Ticks per second of the times in /proc/<pid>/stat (USER_HZ, nearly always 100)."""
    return os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat that the CPU figures need (times in clock ticks)."""

    pid: int
    comm: str
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int
    starttime: int  # ticks after boot

    @property
    def own_ticks(self) -> int:
        return self.utime + self.stime

    @property
    def with_reaped_ticks(self) -> int:
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(text: str) -> ProcStat:
    """One /proc/<pid>/stat line. comm is in parentheses and may itself hold spaces and
    parentheses, so the fields after it are found from the last ')'. ValueError when the
    line is not one."""
    open_at, close_at = text.find("("), text.rfind(")")
    if open_at < 0 or close_at < open_at:
        raise ValueError(f"not a /proc stat line: {text[:80]!r}")
    rest = text[close_at + 1:].split()
    if len(rest) < 20:  # state is field 3; starttime field 22
        raise ValueError(f"a /proc stat line with {len(rest) + 2} fields: {text[:80]!r}")
    # rest[0] is field 3 (state): field n is rest[n - 3]
    return ProcStat(pid=int(text[:open_at]), comm=text[open_at + 1:close_at],
                    ppid=int(rest[1]), utime=int(rest[11]), stime=int(rest[12]),
                    cutime=int(rest[13]), cstime=int(rest[14]), starttime=int(rest[19]))


def read_stat(pid: int, root: Path = PROC) -> ProcStat | None:
    """The process's stat, or None if it is gone or unreadable."""
    try:
        return parse_stat((root / str(pid) / "stat").read_text())
    except (OSError, ValueError):
        return None


def children_of(pid: int, root: Path = PROC) -> list[int]:
    """The live processes whose parent is `pid` (one scan of `root`)."""
    return [stat.pid for stat in _all_stats(root) if stat.ppid == pid]


def _all_stats(root: Path) -> list[ProcStat]:
    found = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    for entry in entries:
        if entry.name.isdigit() and (stat := read_stat(int(entry.name), root)) is not None:
            found.append(stat)
    return found


def tree_ticks(pids: Iterable[int], root: Path = PROC) -> int | None:
    """CPU ticks of these processes so far: their own and reaped children's time, plus
    their live children's own time (one scan of `root`). None if one of them is gone
    or unreadable: a partial sum would read as a figure."""
    wanted = set(pids)
    if not wanted:
        return None
    parents = {pid: read_stat(pid, root) for pid in wanted}
    if any(stat is None for stat in parents.values()):
        return None
    total = sum(stat.with_reaped_ticks for stat in parents.values() if stat is not None)
    return total + sum(s.own_ticks for s in _all_stats(root)
                       if s.ppid in wanted and s.pid not in wanted)


def boot_time(root: Path = PROC) -> float | None:
    """The machine's boot time (seconds since the epoch), from `btime` in /proc/stat."""
    try:
        for line in (root / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def started_at(stat: ProcStat, root: Path = PROC) -> float | None:
    """When the process started, in seconds since the epoch."""
    boot = boot_time(root)
    return None if boot is None else boot + stat.starttime / clock_ticks()


def ticks_delta_ms(before: int | None, after: int | None) -> float | None:
    """Milliseconds of CPU between two readings; None unless both were taken."""
    if before is None or after is None:
        return None
    return (after - before) * 1000 / clock_ticks()
