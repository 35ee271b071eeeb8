"""A real HTTP receiver for webhook tests: http.server on 127.0.0.1 in a thread, answering
with the statuses a test queues (200 when none is queued) and recording every request
(with the client's port, so a test sees connections kept alive, and when it came)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    peer_port: int = 0  # the client's: one per TCP connection
    at: float = 0.0  # time.time() when it arrived

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    """`with Receiver() as r:` r.url, r.received, r.answer(500, 500, ...)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.statuses: deque[int] = deque()
        self.always: int | None = None
        # Set to an Event: each request waits for it (at most 30 s) before it answers.
        self.hold: threading.Event | None = None
        self.reply: bytes | None = None  # the body of every answer (default "status N")
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a production receiver

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                owner.received.append(Received({k.lower(): v for k, v in self.headers.items()},
                                               body, self.client_address[1], time.time()))
                if owner.hold is not None:
                    owner.hold.wait(30)
                status = owner.next_status()
                self.send_response(status)
                reply = owner.reply or f"status {status}".encode()
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                # The client may read what it keeps and hang up.
                with contextlib.suppress(ConnectionError):
                    self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def next_status(self) -> int:
        if self.statuses:
            return self.statuses.popleft()
        return self.always or 200

    def answer(self, *statuses: int) -> None:
        self.statuses.extend(statuses)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
