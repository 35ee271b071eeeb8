"""`dagq bench --quick --phase deliveries`: a real sweeper delivers every run's end to the
bench's receiver; each repetition reports deliveries/s, completion -> delivery and the
drain ratio, and the paced part its latency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.harness.procs import ROOT


def test_bench_deliveries_phase_alone(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = dict(os.environ, DAGQ_DATABASE_URL=db_url, DAGQ_LOG_LEVEL="WARNING")
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from dagq.cli import main; sys.exit(main())",
         "bench", "--quick", "--phase", "deliveries", "--repeat", "1", "--json", str(out)],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    figures = json.loads(out.read_text())["deliveries"]
    [round_] = figures["rounds"]
    assert round_["deliveries"] == round_["distinct"] == figures["runs"] == 300
    assert round_["deliveries_per_s"] > 0 and round_["drain_ratio"] > 0
    assert 0 <= round_["p50_ms"] <= round_["p99_ms"]
    paced = figures["paced"]
    assert paced["deliveries"] == paced["runs"] == 100
    assert 0 <= paced["p50_ms"] <= paced["p99_ms"]
    assert json.loads(done.stdout)["median"]["drain_ratio"] == round_["drain_ratio"]
