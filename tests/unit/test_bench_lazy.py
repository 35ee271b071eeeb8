"""The benchmark is loaded only by `dagq bench`: building the CLI imports its options
module and nothing else of it."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from dagq.cli import build_parser
build_parser()
loaded = sorted(m for m in sys.modules if m.startswith("dagq.bench"))
print(",".join(loaded))
"""


def test_building_the_cli_loads_only_the_bench_options() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip().split(",") == ["dagq.bench", "dagq.bench.args"]


def test_the_bench_command_line_has_repeat_and_compare() -> None:
    import argparse

    from dagq.bench.args import add_bench_arguments

    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    args = parser.parse_args(["--repeat", "5", "--compare", "HEAD~1", "--rounds", "3"])
    assert (args.repeat, args.compare, args.rounds) == (5, "HEAD~1", 3)
    assert parser.parse_args([]).repeat is None  # the sizes' default (3; 2 with --quick)
