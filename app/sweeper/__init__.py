"""The sweeper process: maintenance passes on a schedule (`passes`), started by
`python -m dagq.sweeper` (`__main__`)."""

from __future__ import annotations

from dagq.sweeper.passes import Sweeper, exit_status, run_sweeper

__all__ = ["Sweeper", "exit_status", "run_sweeper"]
