"""The guard against server-side request forgery, for every request dagq makes to a URL a
tenant gave: builtin.http's (dagq.workers.safe_http) and webhook deliveries'
(dagq.service.webhooks). Here, below both processes, so neither copies it.

A tenant's node (or webhook) must not reach what only the worker's network can: loopback (the API's
own /metrics), link-local and cloud metadata (169.254.169.254), private and reserved
ranges. The guard sits where the socket is opened: every TCP connection httpx makes (the
first request and each redirect hop) resolves its host here, drops the addresses that
are not public unless DAGQ_HTTP_ALLOW lists them, and connects to a vetted address
itself, so a name that resolves differently a moment later (DNS rebinding) changes
nothing. The URL keeps its host name, so the Host header and TLS (SNI, certificate
check) still use it.

The reply is read as it arrives and abandoned past a size limit (the worker's output
limit), so a tenant cannot point it at a huge file and exhaust a shared worker's memory.
It asks for an uncompressed reply and refuses a compressed one: a few kilobytes of gzip
can inflate to gigabytes before any limit on the bytes received would notice.
"""

from __future__ import annotations

import codecs
import ipaddress
import json as jsonlib
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list[tuple[Any, ...]]]

MAX_REDIRECTS = 5
DEFAULT_MAX_BYTES = 1_048_576
ERROR_BODY_BYTES = 2_000  # of an error reply's body, kept for the error message
METADATA_HOSTS = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data",
    "instance-data.ec2.internal", "metadata.azure.internal",
})
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "192.0.0.192",
))


class RequestRefused(Exception):
    """A request the guard will not make or finish (a bad URL, an unsafe address, a reply
    too large or compressed). dagq.workers.safe_http turns it into a FatalError."""


class AddressRefused(RequestRefused):
    """The request would reach an address that is not public and not in DAGQ_HTTP_ALLOW."""


@dataclass(frozen=True)
class Allow:
    """DAGQ_HTTP_ALLOW: host names (exact, any address), IPs and CIDRs."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allow:
        hosts, networks = set(), []
        for entry in entries:
            text = entry.strip().strip("[]").lower()
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                if "/" in text or not text:
                    raise RequestRefused(f"DAGQ_HTTP_ALLOW entry {entry!r} is not a host, IP or "
                                     "CIDR") from None
                hosts.add(text.rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def covers(self, address: IPAddress) -> bool:
        forms = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            forms.append(address.ipv4_mapped)
        return any(form in network for form in forms for network in self.networks
                   if form.version == network.version)


def refusal(address: IPAddress) -> str | None:
    """Why builtin.http must not connect to `address` (None: a public address)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (
            address.teredo[1] if address.teredo else None)
        if embedded is not None:
            return refusal(embedded)
        if address.is_site_local:
            return "a site-local address"
    checks = (
        (address in METADATA_ADDRESSES, "a cloud metadata address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_unspecified, "the unspecified address"),
        (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a public address"),
    )
    return next((why for hit, why in checks if hit), None)


class Vetter:
    """Resolve a host and keep the addresses builtin.http may connect to."""

    def __init__(self, allow: Allow, resolve: Resolver = socket.getaddrinfo,
                 who: str = "builtin.http") -> None:
        self.allow = allow
        self.resolve = resolve
        self.who = who  # named in refusals

    def addresses(self, host: str, port: int) -> list[str]:
        name = host.strip("[]").lower().rstrip(".")
        trusted = name in self.allow.hosts
        if name in METADATA_HOSTS and not trusted:
            raise _refused(self.who, host, None, "a cloud metadata host")
        try:
            infos = self.resolve(name, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from None
        vetted: list[str] = []
        first_refused: tuple[str, str] | None = None
        for info in infos:
            text = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 scope id
            address = ipaddress.ip_address(text)
            why = None if trusted or self.allow.covers(address) else refusal(address)
            if why is None:
                if text not in vetted:
                    vetted.append(text)
            elif first_refused is None:
                first_refused = (text, why)
        if not vetted:
            if first_refused is None:
                raise httpcore.ConnectError(f"{host!r} has no address")
            raise _refused(self.who, host, *first_refused)
        return vetted


def _refused(who: str, host: str, address: str | None, why: str) -> AddressRefused:
    what = host if address is None or address == host.strip("[]") else f"{host} ({address})"
    return AddressRefused(f"{who} refuses to connect to {what}: {why}; list it in "
                          "DAGQ_HTTP_ALLOW to allow it")


class _VettedBackend(httpcore.NetworkBackend):
    """httpcore's TCP connect, to vetted addresses only."""

    def __init__(self, vetter: Vetter) -> None:
        self.vetter = vetter
        self.inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        failure: Exception | None = None
        for address in self.vetter.addresses(host, port):
            try:
                return self.inner.connect_tcp(address, port, timeout, local_address,
                                              socket_options)
            except httpcore.ConnectError as exc:  # try the next vetted address
                failure = exc
        assert failure is not None
        raise failure

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None
                            ) -> httpcore.NetworkStream:
        raise AddressRefused(f"{self.vetter.who} does not connect to unix sockets")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport on a connection pool whose every connection is vetted."""

    def __init__(self, vetter: Vetter) -> None:
        super().__init__(trust_env=False)
        # httpx has no public knob for httpcore's network backend: replace the pool it
        # built (tests/integration/workers/test_http_guard.py pins that this stays effective).
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=_VettedBackend(vetter),
        )


@dataclass(frozen=True)
class Reply:
    """An HTTP reply read within the size limit: `content` is its whole body, or for an
    error status (400 and up) the first ERROR_BODY_BYTES of it."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    charset: str | None = None  # of its Content-Type

    @property
    def text(self) -> str:
        charset = self.charset or "utf-8"
        try:
            codecs.lookup(charset)
        except LookupError:
            charset = "utf-8"
        return self.content.decode(charset, errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


def request(method: str, url: str, *, json: Any = None, content: bytes | None = None,
            headers: dict[str, str] | None = None, timeout_s: float = 30.0,
            max_bytes: int = DEFAULT_MAX_BYTES, allow: Allow | None = None,
            resolve: Resolver = socket.getaddrinfo, who: str = "builtin.http",
            follow_redirects: bool = True, excerpt: bool = False) -> Reply:
    """One HTTP(S) call, following at most MAX_REDIRECTS redirects, every hop vetted; a
    body over `max_bytes` is a RequestRefused (with `excerpt`: cut to `max_bytes`, for a
    caller that only keeps a reply's beginning). No proxy from the environment is used
    (it would connect on the guard's behalf). `who` names the caller in refusals."""
    target = checked_url(url, who)
    transport = GuardedTransport(Vetter(allow or Allow(), resolve, who))
    with httpx.Client(transport=transport, trust_env=False, follow_redirects=follow_redirects,
                      max_redirects=MAX_REDIRECTS, timeout=timeout_s,
                      headers={"Accept-Encoding": "identity"}) as client:
        try:
            with client.stream(method, target, json=json, content=content,
                               headers=headers) as response:
                return Reply(response.status_code, response.headers,
                             _read(response, max_bytes, url, who, excerpt),
                             response.charset_encoding)
        except httpx.TooManyRedirects:
            raise RequestRefused(f"{who}: more than {MAX_REDIRECTS} redirects from "
                                 f"{url}") from None
        except httpx.UnsupportedProtocol as exc:  # a redirect to another scheme
            raise RequestRefused(f"{who}: only http:// and https:// URLs ({exc})") from None


def checked_url(url: str, who: str = "builtin.http") -> httpx.URL:
    """`url` parsed, if it is an http(s) URL with a host (RequestRefused if not)."""
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise RequestRefused(f"{who}: invalid url {url!r}: {exc}") from None
    if target.scheme not in ("http", "https") or not target.host:
        raise RequestRefused(f"{who}: only http:// and https:// URLs, not {url!r}")
    return target


def vet_url(url: str, allow: Allow, resolve: Resolver = socket.getaddrinfo,
            who: str = "builtin.http") -> None:
    """Refuse `url` now if its host resolves to no address the guard would connect to
    (AddressRefused), or cannot be resolved (RequestRefused): for URLs stored to be
    called later (webhooks), checked when given. Each call is vetted again anyway."""
    target = checked_url(url, who)
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        Vetter(allow, resolve, who).addresses(target.host, port)
    except httpcore.ConnectError as exc:
        raise RequestRefused(f"{who}: {exc}") from None


def _read(response: httpx.Response, max_bytes: int, url: str, who: str,
          excerpt: bool = False) -> bytes:
    """The body, received chunk by chunk and given up on as soon as it is too large (with
    `excerpt`: its first `max_bytes`, whatever its status or encoding)."""
    if excerpt:
        return _first_bytes(response, max_bytes)
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise RequestRefused(f"{who}: {url} sent a compressed reply (Content-Encoding: "
                         f"{encoding}) although it was asked for an uncompressed one")
    if response.status_code >= 400:
        max_bytes, truncate = min(max_bytes, ERROR_BODY_BYTES), True
    else:
        truncate = False
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise _too_large(url, max_bytes, who)
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > max_bytes:
            if truncate:
                return bytes(body[:max_bytes])
            raise _too_large(url, max_bytes, who)
    return bytes(body)


def _first_bytes(response: httpx.Response, max_bytes: int) -> bytes:
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk
        if len(body) >= max_bytes:
            break
    return bytes(body[:max_bytes])


def _too_large(url: str, max_bytes: int, who: str) -> RequestRefused:
    return RequestRefused(f"{who}: the reply from {url} is over {max_bytes} bytes, the "
                      "worker's output limit (DAGQ_MAX_OUTPUT_BYTES)")
