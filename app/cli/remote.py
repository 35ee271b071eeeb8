"""The CLI's client mode: with DAGQ_URL set (and DAGQ_API_KEY), `submit`, `runs`,
`run show`, `run follow`, `run rerun` and `signal` go through the HTTP API with
dagq.Client instead of the database, and print the same as they do against the database."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pydantic_settings import BaseSettings, SettingsConfigDict

from dagq.errors import InvalidRequest

if TYPE_CHECKING:
    from dagq.client import Client

MAX_PAGE = 500  # the API's largest page of runs


class ClientSettings(BaseSettings):
    """DAGQ_URL and DAGQ_API_KEY, from the environment or `.env` like every setting."""

    model_config = SettingsConfigDict(env_prefix="DAGQ_", env_file=".env", extra="ignore",
                                      frozen=True)

    url: str | None = None
    api_key: str | None = None


def configured() -> ClientSettings | None:
    """The client settings when DAGQ_URL is set, else None (use the database)."""
    settings = ClientSettings()
    return settings if settings.url else None


@contextlib.contextmanager
def _client(settings: ClientSettings) -> Iterator[Client]:
    from dagq.client import Client

    try:
        client = Client(settings.url, settings.api_key or None)
    except ValueError as exc:
        raise InvalidRequest(f"invalid configuration: DAGQ_URL: {exc}") from None
    with client:
        yield client


def submit(args: argparse.Namespace, settings: ClientSettings) -> int:
    from dagq.cli.args import parse_json_arg
    from dagq.cli.views import follow_run_events
    from dagq.client._calls import load_spec

    if args.tenant != "default":
        raise InvalidRequest("--tenant does not apply with DAGQ_URL: a run belongs to the "
                             "tenant of DAGQ_API_KEY")
    inputs = parse_json_arg(args.inputs, "--inputs")
    workflow = args.workflow
    if workflow.endswith((".json", ".yaml", ".yml")):
        workflow = load_spec(workflow)
    with _client(settings) as client:
        result = client.submit(workflow, inputs, event_key=args.event_key,
                               priority=args.priority, version=args.workflow_version)
        verb = "submitted" if result.created else "already submitted (same event key)"
        print(f"{verb}: run {result.run_id}", file=sys.stderr)
        if not args.wait:
            print(result.run_id)
            return 0
        status = follow_run_events(client, result.run_id)
    print(result.run_id)
    return 0 if status == "succeeded" else 1


def runs(args: argparse.Namespace, settings: ClientSettings) -> int:
    from dagq.cli.views import runs_table

    with _client(settings) as client:
        pages = client.runs(args.status, args.workflow, page_size=min(args.limit, MAX_PAGE))
        found = list(itertools.islice(pages, args.limit))
    runs_table(found)
    return 0


def run_follow(args: argparse.Namespace, settings: ClientSettings) -> int:
    from dagq.cli.args import parse_uuid
    from dagq.cli.follow import FeedPrinter, follow_client

    run_id = parse_uuid(args.run_id, "run")
    with _client(settings) as client:
        return 0 if follow_client(client, run_id, FeedPrinter()) == "succeeded" else 1


def signal(args: argparse.Namespace, settings: ClientSettings) -> int:
    from dagq.cli.args import parse_json_arg, parse_uuid
    from dagq.cli.views import signal_sent

    run_id = parse_uuid(args.run_id, "run")
    data = parse_json_arg(args.data, "--data")
    if data is not None and not isinstance(data, dict):
        raise InvalidRequest("a signal's data must be a JSON object")
    with _client(settings) as client:
        signal_sent(client.signal(run_id, args.name, data, signal_id=args.signal_id))
    return 0


def run_rerun(args: argparse.Namespace, settings: ClientSettings) -> int:
    from dagq.cli.args import parse_json_arg, parse_uuid
    from dagq.cli.views import rerun_made

    run_id = parse_uuid(args.run_id, "run")
    outputs = parse_json_arg(args.outputs, "--outputs")
    if outputs is not None and not isinstance(outputs, dict):
        raise InvalidRequest("'outputs' must be a JSON object of node key -> outputs")
    with _client(settings) as client:
        result = client.rerun(run_id, args.from_, outputs,
                              parse_json_arg(args.inputs, "--inputs"))
    return rerun_made(result)


def run_show(args: argparse.Namespace, settings: ClientSettings) -> int:
    from dagq.cli.args import parse_uuid
    from dagq.cli.views import run_detail

    run_id = parse_uuid(args.run_id, "run")
    with _client(settings) as client:
        run_detail(client.run(run_id))
    return 0
