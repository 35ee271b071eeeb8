"""The CLI's two modes answer alike: each input below is run against the database
(DAGQ_DATABASE_URL) and through a live API (DAGQ_URL). For bad input both must print the
same error line, exit with the same status and write nothing; for good input (follow,
show, list) print the same."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pytest

from dagq import service
from dagq.cli import main
from dagq.config import get_settings
from dagq.models import ExecutorInfo
from dagq.store import Store
from tests.harness.drive import drive
from tests.harness.live_api import LiveApi
from tests.harness.specs import spec

FLOW = {"name": "flow", "nodes": {"a": {"executor": "builtin.noop"},
                                  "b": {"executor": "builtin.noop", "depends_on": ["a"]}}}
FILES = {
    "flow.json": json.dumps(FLOW), "bad.json": "{bad", "bad.yaml": "a: [", "list.json": "[1]",
    "empty.yaml": "", "cycle.json": json.dumps({"name": "cycle", "nodes": {
        "a": {"executor": "builtin.noop", "depends_on": ["b"]},
        "b": {"executor": "builtin.noop", "depends_on": ["a"]}}}),
}
DONE, OPEN, NOBODY = "{done}", "{open}", "{nobody}"
# A unique prefix of DONE's id; a prefix two runs share; one that no run's id starts with.
PREFIX, AMBIGUOUS, NO_PREFIX = "{prefix}", "abcd", "{no-prefix}"

# (arguments, exit status, a part of the one error line)
BAD_INPUTS: list[tuple[list[str], int, str]] = [
    (["submit", "missing.json"], 2, "cannot read workflow file 'missing.json'"),
    (["submit", "bad.json"], 2, "bad.json is not valid JSON"),
    (["submit", "./bad.json"], 2, "bad.json is not valid JSON"),
    (["submit", "bad.yaml"], 2, "bad.yaml is not valid YAML"),
    (["submit", "list.json"], 2, "list.json holds no workflow spec"),
    (["submit", "empty.yaml"], 2, "empty.yaml holds no workflow spec"),
    (["submit", "cycle.json"], 2, "the nodes form a cycle"),
    (["submit", "flow.json", "--version", "2"], 2, "'version' applies only to a registered"),
    (["submit", "bad name!"], 2, "workflow name 'bad name!' must match"),
    (["submit", "n" * 100], 2, "must match [A-Za-z0-9_.-]{1,64}"),
    (["submit", "nosuchflow"], 1, "workflow 'nosuchflow' not found"),
    (["submit", "nosuchflow", "--priority", "5000"], 2, "priority must be between"),
    (["submit", "flow.json", "--priority", "-5000"], 2, "priority must be between"),
    (["submit", "flow.json", "--event-key", "x" * 600], 2, "event_key needs 1 to 512"),
    (["submit", "flow.json", "--event-key", ""], 2, "event_key needs 1 to 512"),
    (["submit", "flow.json", "--event-key", "dagq.x"], 2, "are reserved for dagq"),
    (["submit", "flow.json", "--inputs", "{x"], 2, "--inputs is not valid JSON"),
    (["submit", "flow.json", "--inputs", '{"x": NaN}'], 2, "NaN is not valid JSON"),
    (["submit", "flow.json", "--inputs", '{"x": "a\\u0000"}'], 2, "--inputs.x: text may not"),
    (["runs", "--status", "bogus"], 2, "--status 'bogus' is not a run status"),
    (["runs", "--workflow", "x" * 100], 2, "--workflow 'xxx"),
    (["run", "show", "nope"], 2, "'nope' is not a run id (a UUID, or a unique prefix"),
    (["run", "show", NOBODY], 1, "not found"),
    (["run", "follow", NOBODY], 1, "not found"),
    (["run", "rerun", NOBODY, "--from", "a"], 1, "not found"),
    (["run", "rerun", OPEN, "--from", "a"], 1, "only a finished run can be rerun"),
    (["run", "rerun", DONE, "--from", "zz"], 2, "'from' names unknown node(s) 'zz'"),
    (["run", "rerun", DONE, "--from", "bad key!"], 2, "unknown node(s) 'bad key!'"),
    (["run", "rerun", DONE, "--from", ""], 2, "unknown node(s) ''"),
    (["run", "rerun", DONE, "--from", "b", "--outputs", "[1]"], 2, "must be a JSON object"),
    (["run", "rerun", DONE, "--from", "b", "--outputs", '{"a": 1}'], 2, "must be JSON objects"),
    (["run", "rerun", DONE, "--from", "b", "--outputs", '{"zz": {}}'], 2, "may only name"),
    (["run", "rerun", DONE, "--from", "b", "--inputs", "NaN"], 2, "NaN is not valid JSON"),
    (["signal", NOBODY, "go"], 1, "not found"),
    (["signal", DONE, "bad name!", "--data", "[1]"], 2, "signal name 'bad name!' must match"),
    (["signal", DONE, "go", "--data", "[1]"], 2, "a signal's data must be a JSON object"),
    (["signal", DONE, "go", "--data", "{x"], 2, "--data is not valid JSON"),
    (["signal", DONE, "go", "--signal-id", ""], 2, "signal_id needs 1 to 200 characters"),
    (["signal", DONE, "go", "--signal-id", "x" * 300], 2, "signal_id needs 1 to 200"),
    # issue 34: run ids by prefix, and the commands that cover the rest of the API
    (["run", "show", "abc"], 2, "'abc' is not a run id (a UUID, or a unique prefix of at "
                                "least 4 hex digits)"),
    (["run", "show", "zzzz"], 2, "'zzzz' is not a run id"),
    (["run", "show", AMBIGUOUS], 2, "run id prefix 'abcd' is ambiguous: it matches abcd"),
    (["run", "show", NO_PREFIX], 1, "run not found"),
    (["run", "cancel", AMBIGUOUS], 2, "is ambiguous"),
    (["signal", NO_PREFIX, "go"], 1, "run not found"),
    (["run", "rerun", AMBIGUOUS, "--from", "a"], 2, "is ambiguous"),
    (["run", "cancel", NOBODY], 1, "not found"),
    (["run", "cancel", DONE], 1, "already finished (succeeded)"),
    (["run", "cancel", "nope"], 2, "'nope' is not a run id"),
    (["run", "retry", NOBODY], 1, "not found"),
    (["run", "retry", OPEN], 1, "only failed, partial_succeeded or cancelled runs can be"),
    (["run", "retry", OPEN, "--failed-items"], 1, "only failed, partial_succeeded or"),
    (["run", "resolve", NOBODY, "a", "--outputs", "{}"], 1, "not found"),
    (["run", "resolve", DONE, "a", "--outputs", "{}"], 1,
     "only a failed or cancelled node can be resolved; node 'a' is succeeded"),
    (["run", "resolve", DONE, "zz", "--outputs", "{}"], 1, "has no node 'zz'"),
    (["run", "resolve", DONE, "a", "--outputs", "{x"], 2, "--outputs is not valid JSON"),
    (["run", "resolve", DONE, "a", "--outputs", "1"], 2, "'outputs' must be a JSON object"),
    (["run", "resolve", DONE, "a", "--outputs", "@missing.json"], 2,
     "--outputs: cannot read 'missing.json'"),
    (["run", "resolve", DONE, "a", "--outputs", "@bad.json"], 2,
     "--outputs (bad.json) is not valid JSON"),
    (["run", "resolve", "nope", "a", "--outputs", "{}"], 2, "'nope' is not a run id"),
    (["run", "events", NOBODY], 1, "not found"),
    (["run", "events", "x"], 2, "'x' is not a run id"),
    (["workflows", "show", "bad name!"], 2, "workflow name 'bad name!' must match"),
    (["workflows", "show", "nosuchflow"], 1, "workflow 'nosuchflow' not found"),
    (["workflows", "show", "flow", "--version", "9"], 1, "not found"),
    (["keys", "revoke", "nope"], 2, "'nope' is not a key id (a UUID)"),
    (["keys", "revoke", NOBODY], 1, "not found"),
    (["keys", "list", "--tenant", ""], 2, "a tenant name needs 1 to 200 characters"),
    (["runs", "--status", "bogus", "--json"], 2, "(queued, running, succeeded, failed,"),
    # issue 34, item 2: metadata, search and bulk actions
    (["submit", "flow.json", "--meta", "bad key=1"], 2, "--meta key 'bad key' must be 1 to"),
    (["submit", "flow.json", "--meta", "k"], 2, "--meta 'k' must be KEY=VALUE"),
    (["submit", "flow.json", "--meta", "k=" + "x" * 300], 2, "value of 'k' is longer than"),
    (["submit", "flow.json", "--meta", "a=1", "--meta", "a=2"], 2, "--meta 'a' is given twice"),
    (["runs", "--meta", "bad key=1"], 2, "--meta key 'bad key' must be 1 to 64"),
    (["runs", "--since", "yesterday"], 2, "--since 'yesterday' is not a time (ISO 8601"),
    (["runs", "--until", "2026-13-01"], 2, "--until '2026-13-01' is not a time"),
    (["runs", "--since", "99999999999999d"], 2, "is too long ago"),
    (["runs", "--yes"], 2, "--from and --yes go with an action (cancel, retry, rerun)"),
    (["runs", "cancel", "--status", "failed"], 2,
     "refusing to cancel runs matching status=failed without --yes (stdin is not a terminal)"),
    (["runs", "retry", "--meta", "k=v", "--from", "a", "--yes"], 2,
     "'from' applies to a bulk rerun only"),
    (["runs", "rerun", "--from", "bad key!", "--yes"], 2, "unknown node(s) 'bad key!'"),
]


@pytest.fixture
def api(live_api: LiveApi) -> LiveApi:
    """Both modes' tests take `api`: the API these run against is a live one."""
    return live_api


# Good input, answered alike too: (arguments, exit status)
GOOD_INPUTS: list[tuple[list[str], int]] = [
    (["run", "follow", DONE], 0), (["run", "show", DONE], 0), (["runs", "--limit", "5"], 0),
    (["run", "show", PREFIX], 0), (["run", "show", DONE, "--json"], 0),
    (["runs", "--limit", "2", "--json"], 0), (["run", "events", DONE], 0),
    (["run", "events", PREFIX, "--after", "1", "--json"], 0), (["workflows", "list"], 0),
    (["workflows", "list", "--json"], 0), (["workflows", "show", "flow", "--json"], 0),
    (["workflows", "show", "flow"], 0), (["keys", "list", "--tenant", "acme", "--json"], 0),
    (["runs", "--meta", "nobody=here", "--json"], 0),
    (["runs", "--since", "2020-01-01", "--until", "2100-01-01T00:00Z", "--limit", "3"], 0),
    (["runs", "cancel", "--meta", "nobody=here", "--yes"], 0),
]


def answers(cases: list[list[str]],
            capfd: pytest.CaptureFixture[str]) -> list[tuple[int, str, str]]:
    found = []
    for args in cases:
        status = main(args)
        out, err = capfd.readouterr()
        found.append((status, err.strip(), out))
    return found


def counts(sql: psycopg.Connection) -> tuple[int, ...]:
    return tuple(sql.execute(f"SELECT count(*) AS n FROM dagq.{table}").fetchone()["n"]
                 for table in ("runs", "run_events", "signals", "workflows"))


def test_both_modes_answer_alike(api: LiveApi, db_url: str, sql: psycopg.Connection,
                                          tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # the spec files, and no .env
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    service.register_workflow(api.repo, FLOW)
    done = api.repo.submissions.submit_run(
        tenant="acme", spec=spec(FLOW["nodes"], name="flow")).run_id
    drive(api.repo)
    open_ = api.repo.submissions.submit_run(
        tenant="acme", spec=spec(FLOW["nodes"], name="flow")).run_id
    ambiguous = runs_starting_with(api.repo, AMBIGUOUS, monkeypatch)
    taken = {run.hex[:4] for run in (done, open_, *ambiguous)}
    ids = {DONE: str(done), OPEN: str(open_), NOBODY: str(uuid.uuid4()),
           PREFIX: str(done)[:8], NO_PREFIX: next(p * 4 for p in "0123456789" if p * 4
                                                  not in taken)}
    cases = [[ids.get(arg, arg) for arg in args]
             for args in [*(bad for bad, _, _ in BAD_INPUTS), *(good for good, _ in GOOD_INPUTS)]]
    before = counts(sql)

    monkeypatch.setenv("DAGQ_URL", api.url)
    monkeypatch.setenv("DAGQ_API_KEY", api.acme)
    remote = answers(cases, capfd)
    monkeypatch.delenv("DAGQ_URL")
    monkeypatch.setenv("DAGQ_DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        local = answers(cases, capfd)
    finally:
        get_settings.cache_clear()

    assert counts(sql) == before  # neither mode wrote anything
    bad = len(BAD_INPUTS)
    for (args, status), through_api, database in zip(GOOD_INPUTS, remote[bad:], local[bad:],
                                                     strict=True):
        assert through_api == database and database[0] == status, args
    assert "run_succeeded" in local[bad][2] and "4 run(s)" in local[bad + 2][2]
    show, by_prefix, as_json = local[bad + 1][2], local[bad + 3][2], local[bad + 4][2]
    assert by_prefix == show and json.loads(as_json)["run_id"] == str(done)
    assert [r["run_id"] for r in json.loads(local[bad + 5][2])["runs"]] == \
        [str(r) for r in reversed(ambiguous)]  # newest first, as the API pages them
    assert "run_succeeded" in local[bad + 6][2] and "node_succeeded a" in local[bad + 6][2]
    assert all(e["id"] > 1 for e in json.loads(local[bad + 7][2]))
    assert json.loads(local[bad + 9][2])["workflows"][0]["name"] == "flow"
    assert json.loads(local[bad + 10][2])["spec"]["name"] == "flow"
    listed = json.loads(local[bad + 12][2])["keys"]
    assert {k["tenant"] for k in listed} == {"acme"} and len(listed) == 2
    assert all(set(k) == {"id", "tenant", "admin", "created_at", "revoked_at", "revoked_by"}
               for k in listed)  # never the key or its hash
    assert json.loads(local[bad + 13][2]) == {"runs": []}
    assert "3 run(s)" in local[bad + 14][2]
    assert local[bad + 15][2] == "cancelled 0 run(s); skipped 0\n"
    for (args, status, part), through_api, database in zip(BAD_INPUTS, remote[:bad],
                                                            local[:bad], strict=True):
        assert through_api == database, args
        assert database[0] == status, (args, database)
        assert database[1].startswith("dagq: error: ") and "Traceback" not in database[1], args
        assert part in database[1], (args, database)


def runs_starting_with(repo: Store, prefix: str,
                       monkeypatch: pytest.MonkeyPatch) -> list[uuid.UUID]:
    """Two runs of tenant acme whose ids start with `prefix` (ids made while submitting
    them start with it)."""
    real = uuid.uuid4
    with monkeypatch.context() as patched:
        patched.setattr(uuid, "uuid4", lambda: uuid.UUID(prefix + real().hex[len(prefix):]))
        made = [repo.submissions.submit_run(tenant="acme", spec=spec(FLOW["nodes"],
                                                                     name="flow")).run_id
                for _ in range(2)]
    assert all(run.hex.startswith(prefix) for run in made)
    return made


def test_wait_says_when_no_worker_serves_and_when_one_does_again(
        repo: Store, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    """`submit --wait` on the database: the progress the backend reports, shown once."""
    from dagq.cli import backend as cli_backend
    from dagq.cli.views import follow_run

    run_id = repo.submissions.submit_run(
        tenant="acme", spec=spec(FLOW["nodes"], name="flow")).run_id
    polls = iter(range(100))

    def tick(_: float) -> None:  # instead of sleeping: a worker comes, then does the work
        n = next(polls)
        if n == 0:
            repo.fleet.register_worker(worker="w", hostname="h", pid=1, queues=["default"],
                                       threads=1, heartbeat_s=30.0,
                                       executors=[ExecutorInfo(name="builtin.noop",
                                                               queue="default")])
        if n == 1:
            drive(repo)

    monkeypatch.setattr(cli_backend, "WARN_EVERY_S", 0.0)  # look every poll
    local = cli_backend.LocalBackend(repo, get_settings())
    local.sleep = tick
    assert follow_run(local.progress(run_id)) == "succeeded"
    err = capfd.readouterr().err
    assert err.count("waiting: ") == 1 and "builtin.noop" in err
    assert err.count("a live worker serves executor builtin.noop on queue default again") == 1
    assert f"run {run_id} succeeded" in err
