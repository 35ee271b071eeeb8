"""The latency proxy of `dagq bench --via proxy` and the namespace tests: it adds its
delay each way, keeps the bytes in order whatever is in flight, and reaches unix sockets
(the embedded Postgres listens on one)."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time

from dagq.bench.delay_proxy import DelayProxy


def echo_server(listener: socket.socket) -> None:
    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()


def round_trip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        got += sock.recv(65536)
    return got


def test_a_round_trip_takes_the_delay_twice_and_bytes_keep_their_order() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    echo_server(listener)
    with DelayProxy(("127.0.0.1", listener.getsockname()[1]), 0.02) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        started = time.monotonic()
        assert round_trip(sock, b"ping") == b"ping"
        assert time.monotonic() - started >= 0.04
        payload = os.urandom(1_000_000)  # many chunks in flight at once
        assert round_trip(sock, payload) == payload
    assert proxy.connections == 1


def test_it_reaches_a_unix_socket() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s")
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        listener.listen()
        echo_server(listener)
        with DelayProxy(path, 0.001) as proxy, \
                socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            assert round_trip(sock, b"hello") == b"hello"
