"""How an error is put in an event's data. (The rule that ends a run is the SQL function
dagq.final_run_status, migration 007: account_runs and the sweeper's heal both use it.)"""

from __future__ import annotations

from typing import Any


def error_data(error: dict[str, Any] | None) -> dict[str, Any]:
    return {"error": error} if error else {}
