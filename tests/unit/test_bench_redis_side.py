"""The bench's Dramatiq + Redis side is optional: when it fails, dagq's own figures
stand and the reason is reported, never a traceback that loses the run."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from dagq.bench import redis_side


def test_a_failing_redis_side_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setattr(redis_side, "missing", lambda: None)

    @contextlib.contextmanager
    def broken(folder: Path, flags: list[str]):
        raise OSError("redis-server: cannot bind its socket")
        yield  # pragma: no cover

    monkeypatch.setattr(redis_side, "_redis_server", broken)
    got = redis_side.redis_figures(sends=10, grouped=10, workers=1, threads=1, scratch=tmp_path)
    assert got == {"skipped": "redis_default: OSError: redis-server: cannot bind its socket"}


def test_without_redis_server_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    monkeypatch.setattr(redis_side.shutil, "which", lambda name: None)
    got = redis_side.redis_figures(sends=10, grouped=10, workers=1, threads=1, scratch=tmp_path)
    assert "apt-get install redis-server" in got["skipped"]
