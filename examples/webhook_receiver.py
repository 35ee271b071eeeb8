"""A webhook receiver that checks dagq's signature (docs/webhooks.md), with the standard
library only: `python examples/webhook_receiver.py 8001 SECRET` listens on 127.0.0.1:8001
and prints each verified event once (deliveries are at least once: it dedupes on the
dagq-delivery header). Subscribe it with
`dagq webhooks add http://127.0.0.1:8001/ --events run_succeeded,run_failed --secret SECRET`
(and DAGQ_HTTP_ALLOW=127.0.0.1 on the sweeper: loopback is refused otherwise)."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_S = 300  # the replay window: refuse a signature older (or newer) than 5 minutes


def verify(secret: str, header: str, body: bytes, now: float | None = None,
           tolerance_s: float = TOLERANCE_S) -> bool:
    """Whether `header` (dagq-signature: t=<unix seconds>,v1=<hex>) signs `body` (the raw
    bytes received, before any JSON parsing) under `secret`, within the replay window."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        stamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - stamp) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    # bytes: compare_digest raises on a str with non-ASCII characters (anyone can send one)
    return hmac.compare_digest(expected.hexdigest().encode(), parts.get("v1", "").encode())


def handler(secret: str, seen: set[str]) -> type[BaseHTTPRequestHandler]:
    class Receiver(BaseHTTPRequestHandler):
        # Keep-alive: dagq reuses a connection for the next deliveries to this receiver.
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if not verify(secret, self.headers.get("dagq-signature", ""), body):
                self._answer(401)  # dagq retries it, and shows the 401 in the attempt
                return
            delivery = self.headers.get("dagq-delivery", "")
            if delivery not in seen:  # a redelivery of one already handled: just 2xx
                seen.add(delivery)
                event = json.loads(body)
                print(event["event"], event["run_id"], flush=True)
            self._answer(204)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            if status != 204:  # (a 204 has no body, so no length either)
                self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Receiver


def main(argv: list[str]) -> int:
    port, secret = int(argv[1]), argv[2]
    ThreadingHTTPServer(("127.0.0.1", port), handler(secret, set())).serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
