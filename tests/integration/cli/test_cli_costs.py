"""`dagq tenants set NAME --prices JSON --daily-cost-usd X` on a real Postgres: the
tenant's price table and daily budget are stored (left out: kept; `none` removes the
daily budget); bad values exit 2 naming the problem, and nothing is written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.harness.procs import ROOT

pytestmark = pytest.mark.e2e


def test_cli_sets_prices_and_the_daily_budget(db_url: str, sql) -> None:
    env = {**os.environ, "DAGQ_DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}

    def dagq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from dagq.cli import main; raise SystemExit(main())",
             *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    def stored() -> dict | None:
        return sql.execute("SELECT prices, daily_cost_usd::float AS daily FROM "
                           "dagq.tenant_costs WHERE tenant = 'acme'").fetchone()

    for bad, says in ((["--daily-cost-usd", "lots"], "--daily-cost-usd"),
                      (["--daily-cost-usd", "-3"], "daily_cost_usd"),
                      (["--prices", "{not json"], "--prices is not JSON"),
                      (["--prices", '{"m": {"input_usd_per_mtok": -1}}'], "prices")):
        done = dagq("tenants", "set", "acme", *bad)
        assert done.returncode == 2 and says in done.stderr, (bad, done.stderr)
    assert stored() is None
    assert sql.execute("SELECT count(*) AS n FROM dagq.tenants").fetchone()["n"] == 0
    done = dagq("tenants", "set", "acme", "--weight", "2", "--daily-cost-usd", "25",
                "--prices", '{"m": {"input_usd_per_mtok": 3, "output_usd_per_mtok": 15}}')
    assert done.returncode == 0, done.stderr
    assert "1 priced model(s), daily budget 25 USD, spent today 0 USD" in done.stdout
    assert stored() == {"prices": {"m": {"input_usd_per_mtok": 3, "output_usd_per_mtok": 15}},
                        "daily": 25.0}
    assert dagq("tenants", "set", "acme", "--weight", "3").returncode == 0
    assert stored()["daily"] == 25.0  # left out: kept
    assert dagq("tenants", "set", "acme", "--daily-cost-usd", "none").returncode == 0
    assert stored() == {"prices": {"m": {"input_usd_per_mtok": 3, "output_usd_per_mtok": 15}},
                        "daily": None}
