"""Run the API under uvicorn until SIGTERM/SIGINT, then stop gracefully: stop accepting,
let in-flight requests finish, end SSE streams cleanly (sse-starlette sees uvicorn's
exit flag and our streams return), close the pool."""

from __future__ import annotations

import logging
import signal
import socket

import uvicorn

from dagq.api.app import create_app
from dagq.config import Settings

log = logging.getLogger("dagq.api")

GRACEFUL_SHUTDOWN_S = 10
BACKLOG = 2048  # uvicorn's own default
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def shared_socket(host: str, port: int) -> socket.socket:
    """A listening socket with SO_REUSEPORT: several API processes bind the same port and
    the kernel spreads new connections over them (`dagq api --processes N`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings, url: str, *, host: str, port: int,
          reuse_port: bool = False) -> int:
    """Serve until told to stop; 0 after a clean stop, 1 if the server never started."""
    app = create_app(settings, url)
    config = uvicorn.Config(
        app, host=host, port=port, lifespan="on", access_log=False, log_config=None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, server_header=False,
    )
    server = uvicorn.Server(config)
    if settings.auth == "off":
        log.warning("DAGQ_AUTH=off: the API accepts requests WITHOUT a key "
                    "(local development only)")
    received: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    # uvicorn handles the signal, shuts down, then re-raises it to the handler it found:
    # with ours there, serve() returns (and callers' cleanup runs) instead of the
    # process dying by the signal.
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        server.run(sockets=[shared_socket(host, port)] if reuse_port else None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        log.info("API stopped (%s)", signal.Signals(received[0]).name)
    return 0 if server.started else 1
