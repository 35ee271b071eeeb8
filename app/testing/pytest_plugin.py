"""pytest fixtures for a project's integration tests against a real dagq stack.

Load it from your top-level conftest.py (it is not registered as a `pytest11` entry point,
so installing dagq adds nothing to the pytest sessions of projects that do not ask for
it, dagq's own suite included):

    pytest_plugins = ["dagq.testing.pytest_plugin"]

and name the modules declaring your executors in your pytest configuration:

    [tool.pytest.ini_options]
    dagq_actor_modules = ["myproject.executors"]
    dagq_stack_api = true              # also start the HTTP API (for dagq_client)

Fixtures (session-scoped but `dagq_client`): `dagq_stack` (a started
dagq.testing.Stack: `submit_and_wait`, `repo`, `client()`), `dagq_client` (a
dagq.Client on its API) and `dagq_stack_options` (the Stack's keyword arguments:
override it in a conftest to pass `env`, `workers`, `database_url`, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from dagq.testing.stack import Stack

if TYPE_CHECKING:
    from dagq.client import Client

__all__ = ["dagq_client", "dagq_stack", "dagq_stack_options", "pytest_addoption"]

MODULES_INI = "dagq_actor_modules"
API_INI = "dagq_stack_api"


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ini options the fixtures read (pytest calls it when the plugin loads)."""
    parser.addini(MODULES_INI, "modules declaring the executors dagq_stack's workers serve",
                  type="linelist", default=[])
    parser.addini(API_INI, "dagq_stack also starts the HTTP API", type="bool", default=False)


@pytest.fixture(scope="session")
def dagq_stack_options(pytestconfig: pytest.Config) -> dict[str, Any]:
    """The keyword arguments of the session's Stack (from the ini options)."""
    return {"actor_modules": list(pytestconfig.getini(MODULES_INI)),
            "api": bool(pytestconfig.getini(API_INI)), "cwd": pytestconfig.rootpath}


@pytest.fixture(scope="session")
def dagq_stack(dagq_stack_options: dict[str, Any]) -> Iterator[Stack]:
    """Embedded Postgres, the schema, workers serving your executors and the sweeper
    (and the API if asked), for the whole session; stopped at its end."""
    options = dict(dagq_stack_options)
    if not options.get("actor_modules"):
        raise pytest.UsageError(
            f"dagq_stack: set `{MODULES_INI}` in your pytest configuration (the modules "
            "declaring your executors), or override the dagq_stack_options fixture")
    with Stack(**options) as stack:
        yield stack


@pytest.fixture
def dagq_client(dagq_stack: Stack) -> Iterator[Client]:
    """A dagq.Client on the stack's API (needs `dagq_stack_api = true`)."""
    with dagq_stack.client() as client:
        yield client
