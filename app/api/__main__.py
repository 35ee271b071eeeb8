"""`python -m dagq.api --host H --port P [--reuse-port]`: one API process (what `dagq up`
and `dagq api --processes N` start)."""

from __future__ import annotations

import argparse
import logging
import sys

from dagq.api.server import serve
from dagq.runtime import tracing
from dagq.runtime.bootstrap import process_database, process_settings
from dagq.runtime.procs import EXIT_CANNOT_START

log = logging.getLogger("dagq.api")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dagq.api")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--reuse-port", action="store_true",
                        help="share the port with other API processes (SO_REUSEPORT)")
    args = parser.parse_args(argv)
    settings = process_settings()
    tracing.name_process("api")  # the spans' default service.name (OTEL_SERVICE_NAME wins)
    with process_database(
            settings, lambda why: log.error("the API cannot start: %s", why)) as db:
        if db is None:
            return EXIT_CANNOT_START
        return serve(settings, db.url, host=args.host or settings.api_host,
                     port=args.port or settings.api_port, reuse_port=args.reuse_port)

if __name__ == "__main__":
    sys.exit(main())
