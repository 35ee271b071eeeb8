"""Issue 29 item 3: the connection budget `dagq up` and `dagq worker` print, from the
pool-size settings; and the new settings' values."""

from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError

from dagq.cli.processes import _banner
from dagq.config import Settings
from dagq.runtime.budget import Budget, worker_pool_size


def test_a_worker_pool_is_its_threads_plus_four_unless_set() -> None:
    assert worker_pool_size(Settings(), 8) == 12
    assert worker_pool_size(Settings(worker_pool_size=5), 8) == 5


def test_the_budget_of_dagq_up_counts_pools_and_listen_connections() -> None:
    budget = Budget(api=2, workers=3, sweepers=1, threads=8)
    settings = Settings(pool_size=10, sweeper_pool_size=4)
    # 2 x 10 + 3 x 12 + 4 = 60 pooled, + 6 LISTEN (the sweeper's webhook deliverer too)
    assert budget.pooled(settings) == 60 and budget.listen(settings) == 6
    assert budget.line(settings) == (
        "connections: at most 66 to the server: 60 pooled (2 API x 10, 3 worker(s) x 12, "
        "1 sweeper x 4) + 6 LISTEN (1 per API/worker/sweeper process, to the database URL)")
    direct = Settings(listen_url="postgresql://u@primary/db")
    assert budget.line(direct).endswith("to DAGQ_LISTEN_URL)")
    off = Settings(listen="off")
    assert budget.listen(off) == 0
    assert budget.line(off).endswith("(DAGQ_LISTEN=off: no LISTEN connections)")
    polling = Budget(api=2, workers=3, sweepers=1, threads=8, listening=False)
    assert polling.line(settings) == (
        "connections: at most 60 to the server: 60 pooled (2 API x 10, 3 worker(s) x 12, "
        "1 sweeper x 4) (no LISTEN connections: they would never fire)")


def test_the_banner_of_dagq_up_shows_the_budget_and_the_warning(
        capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(api_processes=1, workers=2, threads=4,
                              connections=["connections: at most 37 ...", "LISTEN goes ..."])
    _banner(Settings(database_url="postgresql://u@h/db"), "postgresql://u@h/db", 8000, args,
            [], 1.0)
    err = capsys.readouterr().err
    assert "  budget     connections: at most 37 ..." in err
    assert "  WARNING    LISTEN goes ..." in err


@pytest.mark.parametrize("field", ["listen", "prepared_statements"])
def test_the_switches_take_known_values_only(field: str) -> None:
    assert getattr(Settings(**{field: " OFF "}), field) == "off"
    with pytest.raises(ValidationError):
        Settings(**{field: "sometimes"})
