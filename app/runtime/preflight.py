"""Checks a long-running command makes before it starts anything: one `dagq up` per data
directory, and an API port nobody else listens on (else one line and exit 1, instead of
a second stack sharing the first one's Postgres, or an API restarted forever on
`address already in use`)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from dagq.errors import DagqError

LOCK_NAME = "up.lock"


class AlreadyRunning(DagqError):
    """Another `dagq up` holds this data directory."""


class PortInUse(DagqError):
    """The API's address is taken (or cannot be bound)."""


@contextlib.contextmanager
def one_up_per_data_dir(data_dir: Path) -> Iterator[None]:
    """Hold `<data_dir>/up.lock` (flock) while the block runs; it names the holder's pid.

    The kernel drops the lock when the holder exits, however it dies, so a stale file
    never blocks a start. The descriptor is close-on-exec: children never inherit it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(
                f"another `dagq up` (pid {_holder(fd)}) is running on the data directory "
                f"{data_dir.resolve()}; stop it first, or give this one its own "
                "DAGQ_DATA_DIR") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    """The pid the holder wrote (it may not have written it yet: then '?')."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return text if text.isdigit() else "?"


def ensure_port_free(host: str, port: int) -> None:
    """Raise PortInUse if `host:port` cannot be bound now, as the API will bind it.

    SO_REUSEADDR as uvicorn sets it (a port in TIME_WAIT is free), and no SO_REUSEPORT:
    a port another process listens on, with or without it, is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"port {port} on {host} is already in use (another `dagq up` or "
                    "`dagq api`?); choose another with --port or DAGQ_API_PORT") from None
            raise PortInUse(f"cannot listen on {host}:{port}: "
                            f"{exc.strerror or exc}") from None
