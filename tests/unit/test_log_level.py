"""DAGQ_LOG_LEVEL is a Settings knob: read, checked and defaulted in one place."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dagq.config import Settings


def test_the_level_is_normalised_and_unset_means_the_callers_default() -> None:
    assert Settings(log_level=" debug ").log_level == "DEBUG"
    assert Settings(log_level="").log_level is None
    assert Settings().log_level is None


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log_level"):
        Settings(log_level="LOUD")


def test_the_cli_refuses_a_bad_level_with_a_message(tmp_path) -> None:
    dagq = str(Path(sys.executable).parent / "dagq")
    proc = subprocess.run([dagq, "runs"], cwd=tmp_path,
                          env={"DAGQ_LOG_LEVEL": "LOUD", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "invalid configuration" in proc.stderr and "Traceback" not in proc.stderr
