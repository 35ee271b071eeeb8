"""A signal while the sweeper starts (its database not answering yet) stops it cleanly
once started: no KeyboardInterrupt traceback, exit status 0."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.harness.procs import WorkerFleet

pytestmark = pytest.mark.e2e


class HeldProxy:
    """A TCP proxy to Postgres that holds every connection until `release` is set."""

    def __init__(self, host: str, port: int) -> None:
        # The test server listens on a unix socket (host is its directory), or on TCP.
        self.family = socket.AF_UNIX if host.startswith("/") else socket.AF_INET
        self.target: str | tuple[str, int] = (
            f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port))
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connected = threading.Event()
        self.release = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:  # closed
                return
            self.connected.set()
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self.release.wait()
        upstream = socket.socket(self.family)
        upstream.connect(self.target)
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(src, dst), daemon=True).start()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def test_a_signal_during_startup_stops_the_sweeper_once_started(fleet: WorkerFleet,
                                                                db_url: str) -> None:
    params = conninfo_to_dict(db_url)
    proxy = HeldProxy(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
    user = f"{params['user']}@" if params.get("user") else ""
    held_url = f"postgresql://{user}127.0.0.1:{proxy.port}/{params['dbname']}"
    try:
        sweeper = fleet.start_sweeper(DAGQ_DATABASE_URL=held_url)
        assert proxy.connected.wait(60), fleet.logs()  # it is opening its pool
        sweeper.send_signal(signal.SIGINT)
        proxy.release.set()  # the database answers: the startup completes, then stops
        try:
            code = sweeper.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the sweeper did not stop:\n{fleet.logs()}")
    finally:
        proxy.close()
    logs = fleet.logs()
    assert "Traceback" not in logs and "KeyboardInterrupt" not in logs, logs
    assert code == 0, logs
