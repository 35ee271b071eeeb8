"""The API on a socket for the client tests: the real API served by uvicorn on a real
socket (in a thread of the test process, on the per-test database), and a TCP proxy in
front of it whose connections a test can cut while the server keeps running."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Any

import httpx
import uvicorn

from dagq import service
from dagq.api.app import create_app
from dagq.config import Settings
from dagq.store import Store
from tests.harness.drive import complete
from tests.harness.procs import free_port, wait_for

CHAIN = {"name": "chain", "nodes": {
    "a": {"executor": "builtin.echo"},
    "b": {"executor": "builtin.echo", "depends_on": ["a"]},
    "c": {"executor": "builtin.echo", "depends_on": ["b"]},
    "d": {"executor": "builtin.merge", "depends_on": ["c"]},
}}


class LiveApi:
    """create_app() under uvicorn on 127.0.0.1, with keys: `admin` (tenant acme, admin),
    `acme` and `globex`."""

    def __init__(self, db_url: str, **settings: Any) -> None:
        options: dict[str, Any] = {"database_url": db_url, "auth": "on", "pool_size": 6}
        options.update(settings)
        self.settings = Settings(_env_file=None, **options)  # type: ignore[call-arg]
        self.app = create_app(self.settings, db_url)
        self.app.state.metrics.settle_s = 0.0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, lifespan="on",
                                access_log=False, log_config=None,
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> LiveApi:
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), 30, "uvicorn")
        assert self.server.started, "the API did not start"
        self.repo: Store = self.app.state.repo
        self.admin = service.create_api_key(self.repo, "acme", admin=True)
        self.acme = service.create_api_key(self.repo, "acme")
        self.globex = service.create_api_key(self.repo, "globex")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)


def step(repo: Store, n: int = 1) -> int:
    """Run at most n leasable nodes (as a worker would); return how many ran."""
    done = 0
    for node in repo.leases.lease(worker="w", queue="default", limit=n, ttl_s=30):
        complete(repo, node.id, node.version, {"key": node.node_key})
        done += 1
    return done


class CountingTransport(httpx.HTTPTransport):
    """A real HTTP transport that also counts the requests it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


class CutProxy:
    """Forwards 127.0.0.1:`port` to the API. `cut()` resets every open connection (RST,
    as a dying NAT or load balancer would); new connections work again at once.
    `refuse`: requests whose bytes contain it are reset as soon as they are seen."""

    def __init__(self, target_port: int, refuse: bytes | None = None) -> None:
        self.target_port = target_port
        self.refuse = refuse
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[bytes] = []  # what clients sent, one entry per connection
        self.cuts = 0
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="proxy", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._pairs.append((client, upstream))
                self.requests.append(b"")
                index = len(self.requests) - 1
            threading.Thread(target=self._pump, args=(client, upstream, index),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, index: int | None) -> None:
        try:
            while data := src.recv(65536):
                if index is not None:
                    with self._lock:
                        self.requests[index] += data
                    if self.refuse is not None and self.refuse in self.requests[index]:
                        self._reset(src, dst)
                        return
                dst.sendall(data)
        except OSError:
            pass
        self._reset(src, dst)

    @staticmethod
    def _reset(*sockets: socket.socket) -> None:
        for sock in sockets:
            # Linger 0: close with a RST. shutdown() first wakes the pump thread blocked
            # in recv(), which would otherwise keep the socket open.
            for action in (
                lambda s: s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0)),
                lambda s: s.shutdown(socket.SHUT_RDWR),
                lambda s: s.close(),
            ):
                with contextlib.suppress(OSError):
                    action(sock)

    def cut(self) -> None:
        self.cuts += 1
        self._drop_all()

    def _drop_all(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            self._reset(client, upstream)

    def last_event_ids(self) -> list[str]:
        """The Last-Event-ID header of every request sent through the proxy."""
        found = []
        with self._lock:
            blobs = list(self.requests)
        for blob in blobs:
            for line in blob.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"last-event-id":
                    found.append(value.strip().decode())
        return found

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self._drop_all()
