"""Run the API under uvicorn until SIGTERM/SIGINT, then stop gracefully: stop accepting,
let in-flight requests finish, end SSE streams cleanly (sse-starlette sees uvicorn's
exit flag and our streams return), close the pool."""

from __future__ import annotations

import logging

import uvicorn

from app.api.app import create_app
from app.config import Settings

log = logging.getLogger("dagq.api")

GRACEFUL_SHUTDOWN_S = 10


def serve(settings: Settings, url: str, *, host: str, port: int) -> int:
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
    server.run()
    return 0 if server.started else 1
