"""Many small POSTs to a few receivers (webhook deliveries) on kept-alive connections,
guarded like every request dagq makes to a URL a tenant gave (dagq.runtime.safe_http).

Built on the standard library's http.client rather than httpx: a loopback POST costs
about 100 us of CPU with it against about 535 us with httpx (measured on the reference
machine), and one sweeper's CPU is what bounds its deliveries per second.

The guard is the same `safe_http.Vetter`, applied where the socket is opened: each new
connection resolves its host and connects to a vetted address only (the URL keeps its
host name: Host header, TLS SNI and certificate check use it). A kept connection stays
on the address vetted when it opened. No proxy from the environment is used, no
redirect is followed, and a reply is read only up to `max_bytes` (a connection whose
reply was not read to its end is closed, never reused).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpcore

from dagq.runtime.safe_http import Allow, Resolver, Vetter, checked_url

IDLE_S = 30.0  # an idle kept-alive connection is closed after this
Origin = tuple[str, str, int]  # scheme, host, port


class ConnectError(OSError):
    """No vetted address of the host accepted a connection (or the host has none)."""


@dataclass(frozen=True)
class Reply:
    status_code: int
    content: bytes  # its first max_bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class _Vetted:
    """Opens the socket of an http.client connection to a vetted address."""

    vetter: Vetter
    timeout: float | None

    def _vetted_socket(self, address: tuple[str, int], timeout: Any,
                       source_address: Any = None) -> socket.socket:
        host, port = address
        try:
            addresses = self.vetter.addresses(host, port)
        except httpcore.ConnectError as exc:  # cannot resolve, no address
            raise ConnectError(str(exc)) from None
        failure: OSError | None = None
        for ip in addresses:
            try:
                return socket.create_connection((ip, port), timeout, source_address)
            except OSError as exc:  # try the next vetted address
                failure = exc
        raise ConnectError(f"cannot connect to {host}:{port}: {failure}")


class _HTTP(_Vetted, http.client.HTTPConnection):
    def __init__(self, host: str, port: int, vetter: Vetter, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.vetter = vetter
        self._create_connection = self._vetted_socket  # type: ignore[method-assign,assignment]


class _HTTPS(_Vetted, http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, vetter: Vetter, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.vetter = vetter
        self._create_connection = self._vetted_socket  # type: ignore[method-assign,assignment]


@functools.lru_cache(maxsize=4096)
def _target(url: str, who: str) -> tuple[Origin, str]:
    """A URL's origin and path, checked as safe_http checks it. Cached: a receiver's URL
    comes again with every delivery, and parsing it costs a fifth of a POST's CPU."""
    target = checked_url(url, who)
    port = target.port or (443 if target.scheme == "https" else 80)
    return (target.scheme, target.host, port), target.raw_path.decode("ascii")


class KeepAlivePool:
    """Thread-safe: each call takes an idle connection to the URL's origin (or opens
    one) and puts it back when its reply was read to the end. The callers' own number
    bounds the connections open at once; at most `max_idle` per origin are kept."""

    def __init__(self, allow: Allow, *, who: str, timeout_s: float, max_idle: int,
                 resolve: Resolver = socket.getaddrinfo, total_s: float | None = None) -> None:
        self.vetter = Vetter(allow, resolve, who)
        self.who = who
        self.timeout_s = timeout_s
        self.max_idle = max_idle
        self._idle: dict[Origin, list[tuple[http.client.HTTPConnection, float]]] = {}
        # In a post() now, with the time past which it is cut: `timeout_s` bounds each
        # read, so a receiver dripping a byte per read would hold a sender for hours;
        # `total_s` bounds the whole call (one watchdog thread for the pool).
        self._busy: dict[http.client.HTTPConnection, float] = {}
        self._cut: set[http.client.HTTPConnection] = set()  # cut by the watchdog
        self.total_s = total_s
        self._watchdog: threading.Thread | None = None
        self._lock = threading.Lock()
        self.opened = 0  # connections opened so far (tests see keep-alive work)

    def post(self, url: str, body: bytes, headers: dict[str, str],
             max_bytes: int) -> Reply:
        """POST `body`; the status and the reply's first `max_bytes`. Raises
        safe_http.RequestRefused (a bad URL, a refused address), ConnectError, OSError
        (timeouts, resets) or http.client.HTTPException (a reply that is not HTTP)."""
        origin, path = _target(url, self.who)
        sent = {**headers, "accept-encoding": "identity"}
        conn, reused = self._take(origin)
        try:
            return self._post(origin, conn, reused, path, body, sent, max_bytes)
        finally:
            with self._lock:
                cut = conn in self._cut
                self._cut.discard(conn)
            if cut:  # whatever was read before the cut is no reply (half a header block)
                raise TimeoutError(f"no whole reply within {self.total_s}s")

    def _post(self, origin: Origin, conn: http.client.HTTPConnection, reused: bool, path: str,
              body: bytes, sent: dict[str, str], max_bytes: int) -> Reply:
        try:
            try:
                reply, complete = self._exchange(conn, path, body, sent, max_bytes)
            except (ConnectionError, http.client.RemoteDisconnected):
                if not reused:
                    raise
                # The receiver closed the kept connection while it was idle: once more on
                # a new one (a receiver may then see it twice; it dedupes on the id).
                self._forget(conn)
                conn, reused = self._open(origin), False
                reply, complete = self._exchange(conn, path, body, sent, max_bytes)
        except BaseException:
            self._forget(conn)
            raise
        with self._lock:
            self._busy.pop(conn, None)
        if complete:
            self._put(origin, conn)
        else:
            conn.close()
        return reply

    def close(self) -> None:
        """Close every connection; one in a post() now is cut (its post raises at once),
        so a stopping process never waits for a slow receiver."""
        with self._lock:
            idle, self._idle = self._idle, {}
            busy = list(self._busy)
            self.total_s = None  # the watchdog ends
        for conns in idle.values():
            for conn, _ in conns:
                conn.close()
        for conn in busy:
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _forget(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._busy.pop(conn, None)
            self._cut.discard(conn)  # its post raised already
        conn.close()

    def _mark_busy(self, conn: http.client.HTTPConnection) -> None:
        """Under self._lock: `conn` is in a post() from now on, until its deadline."""
        self._busy[conn] = time.monotonic() + (self.total_s or 0.0)
        if self.total_s and self._watchdog is None:
            self._watchdog = threading.Thread(target=self._cut_late, name="http-deadline",
                                              daemon=True)
            self._watchdog.start()

    def _cut_late(self) -> None:
        """Cut each connection still in a post() past its deadline (its post raises)."""
        while self.total_s:
            time.sleep(min(0.25, self.total_s / 4))
            now = time.monotonic()
            with self._lock:
                late = [conn for conn, deadline in self._busy.items() if deadline < now]
                self._cut.update(late)
            for conn in late:
                sock = conn.sock
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

    def _exchange(self, conn: http.client.HTTPConnection, path: str, body: bytes,
                  headers: dict[str, str], max_bytes: int) -> tuple[Reply, bool]:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        content = response.read(max_bytes)
        # Reusable only when the reply was read to its end and the server keeps it open.
        complete = response.isclosed() and not response.will_close
        return Reply(response.status, content), complete

    def _take(self, origin: Origin) -> tuple[http.client.HTTPConnection, bool]:
        now = time.monotonic()
        stale: list[http.client.HTTPConnection] = []
        found = None
        with self._lock:
            conns = self._idle.get(origin, [])
            while conns:
                conn, since = conns.pop()
                if now - since < IDLE_S:
                    found = conn
                    break
                stale.append(conn)
        for conn in stale:
            conn.close()
        if found is not None:
            with self._lock:
                self._mark_busy(found)
            return found, True
        return self._open(origin), False

    def _open(self, origin: Origin) -> http.client.HTTPConnection:
        scheme, host, port = origin
        conn = (_HTTPS if scheme == "https" else _HTTP)(host, port, self.vetter,
                                                        self.timeout_s)
        with self._lock:
            self.opened += 1
            self._mark_busy(conn)
        return conn

    def _put(self, origin: Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            conns = self._idle.setdefault(origin, [])
            if len(conns) < self.max_idle:
                conns.append((conn, time.monotonic()))
                return
        conn.close()
