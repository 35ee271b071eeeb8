"""The deployment examples (examples/deploy/, docs/operations.md) say what dagq accepts:
every systemd unit's command parses with dagq's own CLI, systemd itself finds nothing
wrong in the units, every setting in dagq.env is one dagq knows with a valid value, and
the worker unit stops the way a worker must be stopped."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dagq.cli.parser import build_parser
from dagq.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "examples" / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
DAGQ = Path(sys.executable).parent / "dagq"


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep case
    parser.read_string(path.read_text())
    return parser


def env_file() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / "dagq.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def test_there_is_a_unit_for_each_dagq_process() -> None:
    commands = {shlex.split(unit(path)["Service"]["ExecStart"])[1] for path in UNITS}
    assert commands == {"db", "api", "worker", "sweeper"}


@pytest.mark.parametrize("path", UNITS, ids=[p.name for p in UNITS])
def test_each_unit_runs_a_command_dagq_accepts(path: Path) -> None:
    service = unit(path)["Service"]
    argv = shlex.split(service["ExecStart"].replace("%i", "default,llm"))
    assert argv[0] == "/opt/dagq/venv/bin/dagq"
    build_parser().parse_args(argv[1:])  # exits 2 (SystemExit) on an unknown flag
    assert service["EnvironmentFile"] == "/etc/dagq/dagq.env"


def test_the_env_file_holds_only_valid_dagq_settings() -> None:
    values = env_file()
    known = {f"DAGQ_{name.upper()}" for name in Settings.model_fields}
    assert set(values) <= known, set(values) - known
    settings = Settings(_env_file=None, **{k[5:].lower(): v for k, v in values.items()})
    assert settings.log_format == "json"
    assert "target_session_attrs=read-write" in (settings.listen_url or "")


def test_the_worker_unit_lets_running_nodes_finish() -> None:
    """SIGTERM to `dagq worker` alone (a worker process that gets a second one hands its
    nodes back at once), and systemd's SIGKILL only after the grace and `dagq worker`'s
    own 15 s wait."""
    service = unit(DEPLOY / "systemd" / "dagq-worker@.service")["Service"]
    assert service["KillMode"] == "mixed"
    grace = float(env_file()["DAGQ_SHUTDOWN_GRACE_S"])
    assert float(service["TimeoutStopSec"]) > grace + 15


def test_systemd_finds_nothing_wrong_in_the_units(tmp_path: Path) -> None:
    verify = shutil.which("systemd-analyze")
    if verify is None:
        pytest.skip("systemd-analyze is not installed (Debian: systemd)")
    assert DAGQ.exists(), DAGQ
    names = []
    for path in UNITS:
        text = path.read_text().replace("/opt/dagq/venv/bin/dagq", str(DAGQ)).replace(
            "/etc/dagq/dagq.env", str(DEPLOY / "dagq.env"))
        name = path.name.replace("@.", "@default.")  # a template is verified as an instance
        (tmp_path / name).write_text(text)
        names.append(str(tmp_path / name))
    done = subprocess.run([verify, "verify", *names], capture_output=True, text=True,
                          timeout=120)
    # A directive systemd cannot parse is only a warning on stderr: none is allowed.
    unit_lines = [line for line in (done.stdout + done.stderr).splitlines()
                  if str(tmp_path) in line or ".service" in line]
    assert done.returncode == 0 and not unit_lines, done.stdout + done.stderr
