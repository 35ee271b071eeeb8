"""dagq.runtime.keepalive_http: the webhook deliverer's connections, against a real server
on 127.0.0.1. Kept alive between POSTs; guarded like builtin.http (a loopback or a name
resolving to it refused unless DAGQ_HTTP_ALLOW lists it, the vetted address connected
to, the host name kept for Host); a reply read only up to its limit, and then its
connection not reused; a receiver that closes connections, or closed an idle one, is
reached on a new connection."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from dagq.runtime.keepalive_http import ConnectError, KeepAlivePool
from dagq.runtime.safe_http import AddressRefused, Allow
from tests.harness.procs import free_port, wait_for
from tests.harness.receiver import Receiver

LOOPBACK = Allow.parse(["127.0.0.1"])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def pool(allow: Allow = LOOPBACK, **kwargs: object) -> KeepAlivePool:
    return KeepAlivePool(allow, who="webhook delivery", timeout_s=5.0, max_idle=4,
                         **kwargs)  # type: ignore[arg-type]


def test_posts_reuse_one_kept_connection(receiver: Receiver) -> None:
    connections = pool()
    for i in range(5):
        reply = connections.post(receiver.url, b'{"n": %d}' % i, {"x-n": str(i)}, 100)
        assert reply.status_code == 200 and reply.text == "status 200"
    assert connections.opened == 1
    assert len({r.peer_port for r in receiver.received}) == 1
    assert [r.headers["x-n"] for r in receiver.received] == ["0", "1", "2", "3", "4"]
    assert receiver.received[0].headers["accept-encoding"] == "identity"
    connections.close()


def test_loopback_is_refused_unless_allowed(receiver: Receiver) -> None:
    with pytest.raises(AddressRefused, match="loopback"):
        pool(Allow()).post(receiver.url, b"{}", {}, 100)
    assert receiver.received == []


def test_the_vetted_address_is_connected_to_with_the_name_kept(receiver: Receiver) -> None:
    port = receiver.server.server_address[1]

    def resolve(host: str, port: int, **kwargs: object) -> list[tuple]:
        assert host == "hooks.example"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    url = f"http://hooks.example:{port}/hook?a=1"
    with pytest.raises(AddressRefused, match="hooks.example"):
        pool(Allow(), resolve=resolve).post(url, b"{}", {}, 100)
    assert pool(resolve=resolve).post(url, b"{}", {}, 100).status_code == 200
    [got] = receiver.received
    assert got.headers["host"] == f"hooks.example:{port}"


def test_a_long_reply_is_cut_and_its_connection_not_reused(receiver: Receiver) -> None:
    receiver.reply = b"x" * 100_000
    connections = pool()
    assert connections.post(receiver.url, b"{}", {}, 50).content == b"x" * 50
    assert connections.post(receiver.url, b"{}", {}, 50).status_code == 200
    assert connections.opened == 2  # the first reply was not read to its end


def test_a_receiver_that_closes_every_connection(receiver: Receiver) -> None:
    class Closing(BaseHTTPRequestHandler):  # HTTP/1.0: one request per connection
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    receiver.server.RequestHandlerClass = Closing
    connections = pool()
    for _ in range(3):
        assert connections.post(receiver.url, b"{}", {}, 100).status_code == 204
    assert connections.opened == 3


def test_an_idle_connection_the_receiver_closed_is_replaced(receiver: Receiver) -> None:
    connections = pool()
    assert connections.post(receiver.url, b"{}", {}, 100).status_code == 200
    [(conn, _since)] = next(iter(connections._idle.values()))
    assert conn.sock is not None
    conn.sock.shutdown(socket.SHUT_RDWR)  # as a receiver's idle timeout does
    assert connections.post(receiver.url, b"{}", {}, 100).status_code == 200
    assert connections.opened == 2


def test_nobody_listening_is_a_connect_error() -> None:
    with pytest.raises(ConnectError, match="cannot connect"):
        pool().post(f"http://127.0.0.1:{free_port()}/", b"{}", {}, 100)


def test_close_cuts_a_post_waiting_for_a_slow_receiver(receiver: Receiver) -> None:
    receiver.hold = threading.Event()  # the receiver answers only when released
    connections = pool()
    failed: list[BaseException] = []

    def post() -> None:
        try:
            connections.post(receiver.url, b"{}", {}, 100)
        except (OSError, http.client.HTTPException) as exc:
            failed.append(exc)

    poster = threading.Thread(target=post)
    poster.start()
    wait_for(lambda: receiver.received, 10, "the POST to arrive")
    started = time.monotonic()
    connections.close()
    poster.join(5)
    receiver.hold.set()
    assert not poster.is_alive() and failed  # cut, not waited out (its timeout is 5 s)
    assert time.monotonic() - started < 2
