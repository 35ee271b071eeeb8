"""The bench's api phase: what it sends, how it starts the deployed front door, and how
it summarises the alternating rounds (no HTTP, no timing; the e2e smoke runs it)."""

from __future__ import annotations

import pytest

from dagq.bench.api_load import BODY, cpu_per_submit, median_round, wrk_script
from dagq.bench.api_procs import BENCH_CONFIG, DEPLOYED
from dagq.config import Settings
from dagq.runtime.procs import api_commands, child_env


def test_the_wrk_script_sends_the_key_only_when_given() -> None:
    assert "Authorization" not in wrk_script(None)
    script = wrk_script("dagq_secret")
    assert 'wrk.headers["Authorization"] = "Bearer dagq_secret"' in script
    assert f"wrk.body = '{BODY}'" in script and 'wrk.method = "POST"' in script


def test_dagq_up_and_the_bench_start_the_same_api_processes() -> None:
    assert api_commands("127.0.0.1", 8000, 1) == [
        ("api", ["-m", "dagq.api", "--host", "127.0.0.1", "--port", "8000"])]
    two = api_commands("0.0.0.0", 9000, 2)
    assert [name for name, _ in two] == ["api-1", "api-2"]
    assert all(argv[-1] == "--reuse-port" and "9000" in argv for _, argv in two)


def test_the_deployed_front_door_runs_with_auth_and_the_default_log_level(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the bench's own environment says (a developer's DAGQ_AUTH=off or
    DAGQ_LOG_LEVEL=WARNING), the deployed processes get dagq up's settings."""
    monkeypatch.setenv("DAGQ_AUTH", "off")
    monkeypatch.setenv("DAGQ_LOG_LEVEL", "WARNING")
    deployed = child_env("postgresql:///x", **DEPLOYED.env)
    bench = child_env("postgresql:///x", **BENCH_CONFIG.env)
    on = Settings(auth=deployed["DAGQ_AUTH"], log_level=deployed["DAGQ_LOG_LEVEL"])
    assert (on.auth, on.log_level) == ("on", None)  # None: the servers' default, INFO
    off = Settings(auth=bench["DAGQ_AUTH"], log_level=bench["DAGQ_LOG_LEVEL"])
    assert (off.auth, off.log_level) == ("off", "WARNING")
    assert DEPLOYED.sweeper and DEPLOYED.auth and not BENCH_CONFIG.sweeper


def test_the_median_round_keeps_every_round_beside_it() -> None:
    rounds = [{"submits_per_s": s, "p50_ms": p, "p99_ms": 2 * p, "requests": 10,
               "api_cpu_ms_per_submit": c}
              for s, p, c in ((900, 30.0, 0.4), (1200, 20.0, None), (1000, 25.0, 0.3))]
    chosen = median_round(rounds, in_process_runs_per_s=2000.0)
    assert chosen["submits_per_s"] == 1000 and chosen["p50_ms"] == 25.0
    assert chosen["vs_in_process"] == 0.5
    spread = chosen["repeats"]["submits_per_s"]
    assert (spread["min"], spread["median"], spread["max"]) == (900, 1000, 1200)
    assert chosen["repeats"]["api_cpu_ms_per_submit"]["values"] == [0.4, 0.3]  # None: left
    even = median_round(rounds[:2], None)  # the low median of an even count
    assert even["submits_per_s"] == 900 and "vs_in_process" not in even


def test_cpu_per_submit_splits_by_process_group_and_bounds_the_rate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dagq.bench.api_load.os.cpu_count", lambda: 2)
    split = cpu_per_submit({"api": 400.0, "postgres": 500.0, "workers": 100.0,
                            "sweeper": None}, requests=1000)
    assert split["api_cpu_ms_per_submit"] == 0.4
    assert split["sweeper_cpu_ms_per_submit"] is None  # not measured: not a zero
    assert split["cpu_ms_per_submit"] == 1.0
    assert split["cpu_bound_submits_per_s"] == 2000  # 2 cores, 1 ms each
    nothing = cpu_per_submit({"api": None}, requests=0)
    assert nothing["cpu_ms_per_submit"] is None and nothing["cpu_bound_submits_per_s"] is None
