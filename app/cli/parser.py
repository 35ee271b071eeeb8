"""The `dagq` command line: its commands, their arguments and how each is checked.

The argument values are checked here, before a command picks its backend (the database,
or the API with DAGQ_URL), so both answer bad input with the same line and exit status
(the rules themselves are dagq.service's and dagq.spec's)."""

from __future__ import annotations

import argparse
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from dagq import __version__
from dagq.errors import InvalidRequest, InvalidWorkflow
from dagq.jsonsafe import unstorable
from dagq.models import WEBHOOK_EVENTS
from dagq.spec.workflow import KEY_PATTERN
from dagq.states import RunStatus

EXIT_INPUT = 2
BULK_ACTIONS = ("cancel", "retry", "rerun")
DEFAULT_RUNS = 20  # runs `dagq runs` lists without --limit
AGE = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd])")
AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
RUN_ID_HELP = "a run id, or a unique prefix of one (at least 4 hex digits)"
SPEC_FILE_SUFFIXES = (".json", ".yaml", ".yml")


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_arg(text: str | None, what: str) -> Any:
    """JSON that Postgres can store (as the API's bodies must be), or None for None."""
    if text is None:
        return None
    try:
        value = json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"{what} is not valid JSON: {exc}") from None
    if (problem := unstorable(value, what)) is not None:
        raise InvalidRequest(problem)
    return value


def json_or_file(text: str, what: str) -> Any:
    """parse_json_arg of `text`, or of the file it names as `@path`."""
    if not text.startswith("@"):
        return parse_json_arg(text, what)
    path = text[1:]
    try:
        with open(path, encoding="utf-8") as handle:
            content = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{what}: cannot read {path!r}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
    return parse_json_arg(content, f"{what} ({path})")


def parse_uuid(text: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise InvalidRequest(f"{text!r} is not a {what} id (a UUID)") from None


def workflow_file(text: str) -> Any:
    """A .json/.yaml argument read as the spec it holds (the client's loader, so a file
    fails alike wherever it is read); any other argument is a workflow name."""
    if not text.endswith(SPEC_FILE_SUFFIXES):
        return text
    from dagq.client._calls import load_spec

    return load_spec(text)


def workflow_arg(text: str) -> str | dict[str, Any]:
    """`dagq submit`'s WORKFLOW: a spec file that holds a JSON/YAML object, or a name a
    workflow can have."""
    if text.endswith(SPEC_FILE_SUFFIXES):
        spec = workflow_file(text)
        if not isinstance(spec, dict):
            raise InvalidWorkflow(f"{text} holds no workflow spec (a JSON or YAML object)")
        return spec
    if not re.fullmatch(KEY_PATTERN, text):
        raise InvalidRequest(f"workflow name {text[:100]!r} must match "
                             "[A-Za-z0-9_.-]{1,64} (or be a .json/.yaml file)")
    return text


def check_run_filter(status: str | None, workflow: str | None) -> None:
    """`dagq runs --status --workflow`: values a run can have (the API's query rules)."""
    if status is not None and status not in get_args(RunStatus):
        raise InvalidRequest(f"--status {status[:100]!r} is not a run status "
                             f"({', '.join(get_args(RunStatus))})")
    if workflow is not None and not re.fullmatch(KEY_PATTERN, workflow):
        raise InvalidRequest(f"--workflow {workflow[:100]!r} must match [A-Za-z0-9_.-]{{1,64}}")


def parse_since(text: str | None, flag: str) -> datetime | None:
    """`--since`/`--until`: ISO 8601 (UTC without an offset, as the API reads it), or an
    age (`30m`: 30 minutes ago)."""
    if text is None:
        return None
    if (age := AGE.fullmatch(text.strip())) is not None:
        try:
            return datetime.now(UTC) - timedelta(
                seconds=float(age.group(1)) * AGE_UNITS[age.group(2)])
        except OverflowError:
            raise InvalidRequest(f"{flag} {text[:100]!r} is too long ago") from None
    from dagq.api.schemas import parse_time

    try:
        return parse_time(text, flag)
    except InvalidRequest:
        raise InvalidRequest(f"{flag} {text[:100]!r} is not a time (ISO 8601, e.g. "
                             "2026-12-07T10:00, or an age such as 30m, 2h, 7d)") from None


def check_workflow_name(name: str) -> None:
    if not re.fullmatch(KEY_PATTERN, name):
        raise InvalidRequest(f"workflow name {name[:100]!r} must match [A-Za-z0-9_.-]{{1,64}}")


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="one JSON document on stdout (the API's own shape)")


def _meta_flag(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--meta", action="append", default=None, metavar="KEY=VALUE",
                        help=f"{text} (repeat for more)")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dagq", description="A durable DAG job queue on "
                                     "PostgreSQL.")
    parser.add_argument("--version", action="version", version=f"dagq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_service_commands(sub)
    _add_run_commands(sub)
    _add_admin_commands(sub)
    _add_webhook_commands(sub)
    _add_emit_command(sub)
    from dagq.cli.pauses import add_pause_commands

    add_pause_commands(sub)

    from dagq.bench.args import add_bench_arguments

    add_bench_arguments(sub.add_parser("bench", help="measure throughput and latency"))
    return parser


def _add_service_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The long-running processes: up, api, worker, sweeper."""
    up = sub.add_parser("up", help="Postgres, migrations, API, workers and sweeper")
    up.add_argument("--workers", type=_int_at_least(0), default=2, help="worker processes")
    up.add_argument("--threads", type=_int_at_least(1), default=8, help="threads per worker")
    up.add_argument("--port", type=_int_at_least(1), default=None, help="API port")
    up.add_argument("--api-processes", type=_int_at_least(1), default=None,
                    help="API processes sharing the port (default: by the CPU count)")

    api = sub.add_parser("api", help="the HTTP API only")
    api.add_argument("--host", default=None)
    api.add_argument("--port", type=_int_at_least(1), default=None)
    api.add_argument("--processes", type=_int_at_least(1), default=1,
                     help="API processes sharing the port (SO_REUSEPORT)")

    worker = sub.add_parser("worker", help="worker processes that execute nodes")
    worker.add_argument("--processes", type=_int_at_least(1), default=2)
    worker.add_argument("--threads", type=_int_at_least(1), default=8)
    worker.add_argument("--queues", default="", help="comma-separated queue names")

    sub.add_parser("sweeper", help="the maintenance service only")


def _add_run_actions(run_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`run cancel|retry|rerun|resolve`: what changes a run."""
    run_sub.add_parser("cancel", help="cancel an open run").add_argument(
        "run_id", metavar="RUN_ID", help=RUN_ID_HELP)
    retry = run_sub.add_parser("retry", help="requeue a failed, partially succeeded or "
                               "cancelled run's unfinished nodes")
    retry.add_argument("run_id", metavar="RUN_ID", help=RUN_ID_HELP)
    retry.add_argument("--failed-items", action="store_true",
                       help="a map node keeps the items that succeeded (and their outputs) "
                            "and runs only the others again")
    rerun = run_sub.add_parser("rerun", help="a new run of a finished run: the --from "
                               "nodes and everything downstream run again, the rest is "
                               "copied; prints the new run id")
    rerun.add_argument("run_id", metavar="RUN_ID", help=RUN_ID_HELP)
    rerun.add_argument("--from", dest="from_", action="append", required=True,
                       metavar="KEY", help="a node to run again (repeat for more)")
    rerun.add_argument("--outputs", default=None,
                       help='outputs to use for copied nodes, as JSON {"key": {...}}')
    rerun.add_argument("--inputs", default=None, help="new run inputs as JSON")
    resolve = run_sub.add_parser("resolve", help="mark a failed or cancelled node succeeded "
                                 "with the given outputs; the run goes on from it")
    resolve.add_argument("run_id", metavar="RUN_ID", help=RUN_ID_HELP)
    resolve.add_argument("node_key", metavar="NODE", help="the node's key")
    resolve.add_argument("--outputs", required=True, metavar="JSON|@FILE",
                         help="the node's outputs: a JSON object (a list for a map node), "
                              "or @path to a file holding it")


def _add_run_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Submitting and reading runs: submit, runs, run, signal."""
    submit = sub.add_parser("submit", help="submit a run")
    submit.add_argument("workflow", metavar="WORKFLOW",
                        help="a registered workflow name, or a .json/.yaml spec file")
    submit.add_argument("--inputs", default=None, help="run inputs as JSON")
    submit.add_argument("--event-key", default=None)
    submit.add_argument("--version", dest="workflow_version", type=_int_at_least(1))
    submit.add_argument("--priority", type=int, default=0)
    submit.add_argument("--tenant", default="default")
    _meta_flag(submit, "metadata to find the run by (values are stored as text)")
    submit.add_argument("--wait", action="store_true", help="show progress until it ends")

    _add_runs_command(sub)

    run = sub.add_parser("run", help="one run")
    run_sub = run.add_subparsers(dest="run_command", required=True, metavar="COMMAND")
    show = run_sub.add_parser("show", help="a run and its nodes")
    show.add_argument("run_id", metavar="RUN_ID", help=RUN_ID_HELP)
    show.add_argument("--verbose", action="store_true",
                      help="errors whole (every frame of the traceback)")
    _json_flag(show)
    _add_run_actions(run_sub)
    from dagq.cli.why import add_why_command

    add_why_command(run_sub)
    events = run_sub.add_parser("events", help="a run's stored events (not its streamed "
                                "text: `run follow`)")
    events.add_argument("run_id", metavar="RUN_ID", help=RUN_ID_HELP)
    events.add_argument("--after", type=_int_at_least(0), default=0, metavar="N",
                        help="only events after event id N")
    _json_flag(events)
    follow = run_sub.add_parser("follow", help="print a run's events and streamed text "
                                "as they come, until it ends")
    follow.add_argument("run_id", metavar="RUN_ID", help=RUN_ID_HELP)

    signal = sub.add_parser("signal", help="send a signal to a run's wait node")
    signal.add_argument("run_id", metavar="RUN_ID", help=RUN_ID_HELP)
    signal.add_argument("name", metavar="NAME", help="the signal's name (wait.signal)")
    signal.add_argument("--data", default=None, help="the signal's data as a JSON object")
    signal.add_argument("--signal-id", default=None,
                        help="idempotency key: the same id again changes nothing")


def _add_runs_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`dagq runs [ACTION] [filters]`: list runs, or act on every run the filters find."""
    runs = sub.add_parser("runs", help="list runs; or cancel, retry or rerun every run the "
                          "filters find")
    runs.add_argument("action", nargs="?", choices=BULK_ACTIONS, metavar="ACTION",
                      help="cancel|retry|rerun the runs the filters find (asks first; "
                           "--yes when stdin is not a terminal)")
    runs.add_argument("--status", default=None)
    runs.add_argument("--workflow", default=None)
    _meta_flag(runs, "only runs whose metadata has this key and value")
    runs.add_argument("--since", default=None, metavar="TIME",
                      help="only runs created at or after TIME (ISO 8601, UTC without an "
                           "offset; or an age such as 30m, 2h, 7d)")
    runs.add_argument("--until", default=None, metavar="TIME",
                      help="only runs created before TIME (as --since)")
    runs.add_argument("--limit", type=_int_at_least(1), default=None,
                      help=f"at most this many runs (listing: {DEFAULT_RUNS})")
    runs.add_argument("--from", dest="from_", action="append", default=None, metavar="KEY",
                      help="rerun: the node to run again in each run (repeat for more; "
                           "default: each run's failed and cancelled nodes)")
    runs.add_argument("--yes", action="store_true", help="act without asking")
    _json_flag(runs)


def _add_admin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The database, API keys, cron schedules and tenants."""
    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    db_sub.add_parser("migrate", help="apply pending migrations (creates the embedded "
                      "database if there is none)")
    db_sub.add_parser("status", help="the applied and pending migrations, and whether "
                      "this dagq may run on the schema")

    keys = sub.add_parser("keys", help="API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = keys_sub.add_parser("create", help="create a key (printed once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--admin", action="store_true")
    keys_list = keys_sub.add_parser("list", help="keys (never the key itself), revoked "
                                    "ones too")
    keys_list.add_argument("--tenant", default=None, help="one tenant's keys")
    _json_flag(keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key for good (with DAGQ_URL: "
                                 "an admin key)")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key's id (`keys list`)")

    workflows = sub.add_parser("workflows", help="registered workflows")
    wf_sub = workflows.add_subparsers(dest="workflows_command", required=True,
                                      metavar="COMMAND")
    _json_flag(wf_sub.add_parser("list", help="every registered workflow"))
    wf_show = wf_sub.add_parser("show", help="a workflow's spec (its latest version, or "
                                "--version)")
    wf_show.add_argument("name", metavar="NAME")
    wf_show.add_argument("--version", dest="workflow_version", type=_int_at_least(1))
    _json_flag(wf_show)

    schedules = sub.add_parser("schedules", help="cron schedules")
    sched_sub = schedules.add_subparsers(dest="schedules_command", required=True,
                                         metavar="COMMAND")
    sched_create = sched_sub.add_parser("create", help="fire WORKFLOW on a cron schedule")
    sched_create.add_argument("workflow", metavar="WORKFLOW",
                              help="a registered workflow name, or a .json/.yaml spec file")
    sched_create.add_argument("--cron", required=True, help='e.g. "0 3 * * *"')
    sched_create.add_argument("--timezone", default="UTC")
    sched_create.add_argument("--inputs", default=None, help="run inputs as JSON")
    sched_create.add_argument("--tenant", default="default")
    sched_create.add_argument("--while-paused", choices=("queue", "skip"), default="queue")
    _json_flag(sched_sub.add_parser("list", help="all schedules"))
    sched_delete = sched_sub.add_parser("delete", help="delete a schedule")
    sched_delete.add_argument("schedule_id", metavar="SCHEDULE_ID")

    _add_tenant_commands(sub)


def _add_tenant_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`dagq tenants set|list`."""
    tenants = sub.add_parser("tenants", help="tenants' weights and quotas")
    tenants_sub = tenants.add_subparsers(dest="tenants_command", required=True,
                                         metavar="COMMAND")
    tenant_set = tenants_sub.add_parser(
        "set", help="set a tenant's weight and quotas (an option left out: no limit)")
    tenant_set.add_argument("name", metavar="NAME")
    tenant_set.add_argument("--weight", type=float, default=1.0)
    tenant_set.add_argument("--max-queued-runs", type=_int_at_least(0), default=None)
    tenant_set.add_argument("--max-running-nodes", type=_int_at_least(0), default=None)
    tenant_set.add_argument("--submit-rate", default=None, metavar="R/s",
                            help="runs per second, e.g. 10 or 10/s")
    from dagq.cli.cost_options import add_cost_options

    add_cost_options(tenant_set)
    tenant_list = tenants_sub.add_parser("list", help="tenants with settings or open runs")
    _json_flag(tenant_list)


def _add_emit_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`dagq emit` (dagq.cli.emit)."""
    emit = sub.add_parser("emit", help="emit an event: starts the workflows subscribed to "
                          "it (their triggers)")
    emit.add_argument("name", metavar="NAME", help="the event's name, e.g. ticket.created")
    emit.add_argument("--payload", default=None,
                      help="the event's payload as a JSON object (each run's inputs)")
    emit.add_argument("--event-id", default=None,
                      help="idempotency id: the same id again starts nothing new")
    _meta_flag(emit, "metadata of each run it starts (values are stored as text)")
    emit.add_argument("--tenant", default="default",
                      help="the tenant the runs belong to (the database only)")
    _json_flag(emit)


def _add_webhook_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`dagq webhooks ...` (dagq.cli.webhooks)."""
    webhooks = sub.add_parser("webhooks", help="webhook subscriptions and deliveries")
    cmds = webhooks.add_subparsers(dest="webhooks_command", required=True, metavar="COMMAND")
    add = cmds.add_parser("add", help="POST a tenant's run events to URL (signed)")
    add.add_argument("url", metavar="URL")
    add.add_argument("--events", required=True,
                     help=f"comma-separated, of: {', '.join(WEBHOOK_EVENTS)}")
    add.add_argument("--workflow", default=None, help="only this workflow's runs")
    add.add_argument("--secret", default=None, help="HMAC key (default: generated, "
                     "printed once)")
    listing = cmds.add_parser("list", help="subscriptions (never their secrets)")
    remove = cmds.add_parser("remove", help="delete a subscription")
    remove.add_argument("webhook_id", metavar="ID")
    deliveries = cmds.add_parser("deliveries", help="deliveries, newest first")
    deliveries.add_argument("--status", choices=("pending", "succeeded", "failed"), default=None)
    deliveries.add_argument("--limit", type=int, default=50)
    show = cmds.add_parser("show", help="a delivery with every attempt")
    show.add_argument("delivery_id", metavar="ID")
    redeliver = cmds.add_parser("redeliver", help="send a delivery again now")
    redeliver.add_argument("delivery_id", metavar="ID")
    for parser in (add, listing, remove, deliveries, show, redeliver):
        parser.add_argument("--tenant", default="default")
    for parser in (listing, deliveries, show):
        _json_flag(parser)
