"""builtin.http refuses internal addresses (issue 12, SSRF): checked on the address each
connection actually uses, after DNS and after every redirect, before any packet is sent.

A local server on 127.0.0.1 stands in for both the API's /metrics and an allowed target;
`socket.create_connection` is watched so that no test ever connects anywhere but the
loopback addresses it means to."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from dagq.config import get_settings
from dagq.workers import builtins
from dagq.workers.errors import FatalError
from dagq.workers.safe_http import AddressRefused, Allow, refusal, request


class Target:
    """A server on 127.0.0.1: /json answers JSON (with the Host it saw), /to?u=URL
    redirects there, /loop redirects to itself, /big?n=N streams N bytes (see `big`)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.big_sent = 0  # bytes of the last /big body written to the socket
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                target.paths.append(self.path)
                parsed = urlparse(self.path)
                if parsed.path == "/big":
                    target.big(self, parse_qs(parsed.query))
                    return
                if parsed.path in ("/to", "/loop"):
                    self.send_response(302)
                    self.send_header("Location", parse_qs(parsed.query)["u"][0]
                                     if parsed.path == "/to" else "/loop")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"ok": True, "host": self.headers["Host"]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def big(self, handler: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> None:
        """n bytes of JSON-ish text in 64 KiB writes, close-delimited (no Content-Length)
        unless `declare`; `status` and `encoding` (a Content-Encoding) as asked."""
        size = int(query["n"][0])
        handler.send_response(int(query.get("status", ["200"])[0]))
        handler.send_header("Content-Type", "application/json")
        if "declare" in query:
            handler.send_header("Content-Length", str(size))
        if "encoding" in query:
            handler.send_header("Content-Encoding", query["encoding"][0])
        handler.end_headers()
        self.big_sent = 0
        chunk = b"x" * 65536
        try:
            while self.big_sent < size:
                piece = chunk[:size - self.big_sent]
                handler.wfile.write(piece)
                self.big_sent += len(piece)
        except OSError:
            pass  # the client stopped reading

    def url(self, path: str = "/json", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address a test connects to; anything but loopback fails the test at once."""
    seen: list[str] = []
    real = socket.create_connection

    def watched(address, *args, **kwargs):
        seen.append(address[0])
        assert address[0] in ("127.0.0.1", "::1"), f"a test connected to {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", watched)
    return seen


ALLOW_LOCAL = Allow.parse(["127.0.0.1"])


def refused(url: str, **kwargs) -> str:
    with pytest.raises(AddressRefused) as info:
        request("GET", url, timeout_s=5, **kwargs)
    message = str(info.value)
    assert "DAGQ_HTTP_ALLOW" in message
    return message


def test_internal_addresses_are_refused_before_connecting(target: Target, connections) -> None:
    cases = {
        target.url(): "127.0.0.1: a loopback address",
        target.url(host="localhost"): "a loopback address",
        target.url(host="[::1]"): "::1: a loopback address",
        target.url(host="[::ffff:127.0.0.1]"): "a loopback address",
        target.url(host="0.0.0.0"): "the unspecified address",
        "http://10.1.2.3/": "10.1.2.3: a private address",
        "http://192.168.0.1:8080/": "a private address",
        "http://[fd12:3456::1]/": "a private address",
        "http://169.254.169.254/latest/meta-data/": "169.254.169.254: a cloud metadata",
        "http://[fd00:ec2::254]/": "a cloud metadata address",
        "http://metadata.google.internal/computeMetadata/v1/": "a cloud metadata host",
        "http://224.0.0.1/": "a multicast address",
        "http://240.0.0.1/": "a reserved address",
        "http://100.64.0.1/": "not a public address",
    }
    for url, why in cases.items():
        message = refused(url)
        assert why in message, (url, message)
    assert connections == [] and target.paths == []


def test_a_name_that_resolves_to_loopback_is_refused(target: Target, connections) -> None:
    def resolve(host, port, **kwargs):
        assert host == "internal.example"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    message = refused(target.url(host="internal.example"), resolve=resolve)
    assert "internal.example (127.0.0.1): a loopback address" in message
    assert connections == [] and target.paths == []


def test_a_redirect_to_a_refused_address_is_refused(target: Target, connections) -> None:
    for to in ("http://127.0.0.2:{port}/json", "http://169.254.169.254/latest/",
               "http://[::1]:{port}/json"):
        url = target.url(f"/to?u={to.format(port=target.port)}")
        message = refused(url, allow=ALLOW_LOCAL)
        assert "refuses to connect to" in message
    assert set(connections) == {"127.0.0.1"}  # only the allowed first hop
    assert [p.split("?")[0] for p in target.paths] == ["/to"] * 3
    with pytest.raises(FatalError, match="only http"):
        request("GET", target.url("/to?u=file:///etc/passwd"), allow=ALLOW_LOCAL)
    with pytest.raises(FatalError, match="more than 5 redirects"):
        request("GET", target.url("/loop"), allow=ALLOW_LOCAL)


def test_allowed_hosts_ips_and_cidrs_reach_the_server(target: Target) -> None:
    for allow, host in ((["127.0.0.1"], "127.0.0.1"), (["127.0.0.0/8"], "127.0.0.1"),
                        (["localhost"], "localhost"), ([" LOCALHOST. ", "10.0.0.0/8"],
                                                       "localhost")):
        response = request("GET", target.url(host=host), allow=Allow.parse(allow))
        assert response.status_code == 200 and response.json()["ok"] is True
    followed = request("GET", target.url(f"/to?u={target.url()}"), allow=ALLOW_LOCAL)
    assert followed.json()["ok"] is True


def test_the_vetted_address_is_the_one_connected_to(target: Target, connections) -> None:
    """DNS rebinding: a second lookup would answer 127.0.0.3 (not allowed, nothing
    listening); the guard resolves once per connection and connects to what it vetted,
    keeping the name in the Host header."""
    answers = iter(["127.0.0.1", "127.0.0.3"])
    calls: list[str] = []

    def resolve(host, port, **kwargs):
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    response = request("GET", target.url(host="rebind.test"), allow=ALLOW_LOCAL,
                       resolve=resolve)
    assert response.json() == {"ok": True, "host": f"rebind.test:{target.port}"}
    assert calls == ["rebind.test"] and connections == ["127.0.0.1"]


def test_only_http_and_https(connections) -> None:
    for url in ("file:///etc/passwd", "ftp://example.com/x", "gopher://127.0.0.1:70/",
                "http:///nohost"):
        with pytest.raises(FatalError):
            request("GET", url)
    assert connections == []


def test_refusal_classifies_addresses() -> None:
    import ipaddress

    assert refusal(ipaddress.ip_address("8.8.8.8")) is None
    assert refusal(ipaddress.ip_address("2001:4860:4860::8888")) is None
    assert refusal(ipaddress.ip_address("2002:7f00:1::")) == "a loopback address"  # 6to4
    assert refusal(ipaddress.ip_address("fec0::1")) == "a site-local address"
    with pytest.raises(FatalError, match="not a host, IP or CIDR"):
        Allow.parse(["10.0.0.0/33"])


def test_builtin_http_reads_dagq_http_allow(target: Target,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The executor itself: the API's /metrics on 127.0.0.1 was reachable; now it is
    refused for good (FatalError) unless the operator lists it."""
    monkeypatch.delenv("DAGQ_HTTP_ALLOW", raising=False)
    get_settings.cache_clear()
    try:
        with pytest.raises(AddressRefused) as info:
            builtins.http({"params": {"url": target.url("/metrics")}})
        assert isinstance(info.value, FatalError) and "127.0.0.1" in str(info.value)
        monkeypatch.setenv("DAGQ_HTTP_ALLOW", "10.0.0.0/8, 127.0.0.1")
        get_settings.cache_clear()
        assert builtins.http({"params": {"url": target.url()}})["ok"] is True
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert target.paths == ["/json"]


@pytest.fixture
def local_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """builtin.http as a worker with DAGQ_HTTP_ALLOW=127.0.0.1, DAGQ_MAX_OUTPUT_BYTES=1000."""
    monkeypatch.setenv("DAGQ_HTTP_ALLOW", "127.0.0.1")
    monkeypatch.setenv("DAGQ_MAX_OUTPUT_BYTES", "1000")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def http_fails(url: str) -> str:
    with pytest.raises(FatalError) as info:
        builtins.http({"params": {"url": url, "timeout_s": 30}})
    return str(info.value)


def test_builtin_http_stops_reading_at_the_output_limit(target: Target, local_worker) -> None:
    """A reply larger than the worker's output limit fails for good, read only up to it:
    the server could not write most of its 64 MiB before the connection was dropped."""
    total = 64 * 1024 * 1024
    message = http_fails(target.url(f"/big?n={total}"))
    assert "over 1000 bytes" in message and "DAGQ_MAX_OUTPUT_BYTES" in message
    assert target.big_sent < total // 2
    declared = http_fails(target.url(f"/big?n={total}&declare=1"))  # refused unread
    assert "over 1000 bytes" in declared
    assert builtins.http({"params": {"url": target.url("/big?n=1000")}}) == \
        {"status": 200, "text": "x" * 1000}  # at the limit: read


def test_builtin_http_refuses_compressed_and_truncates_error_replies(
        target: Target, local_worker) -> None:
    """gzip would inflate past any limit on the bytes received, so it is not accepted;
    an error reply's body only feeds the error message, so its head is enough."""
    message = http_fails(target.url("/big?n=10&encoding=gzip"))
    assert "Content-Encoding: gzip" in message
    missing = http_fails(target.url(f"/big?n={8 * 1024 * 1024}&status=404"))
    assert missing.startswith("HTTP 404 from ") and "over" not in missing
    assert missing.endswith("x" * 500)
