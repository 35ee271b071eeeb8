"""`python -m dagq.api --host H --port P`: the API process (what `dagq up` starts)."""

from __future__ import annotations

import argparse
import sys

from dagq.api.server import serve
from dagq.bootstrap import database
from dagq.config import get_settings
from dagq.logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dagq.api")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level)
    with database(settings, migrate=False) as db:  # `dagq up`/`dagq api` migrated
        return serve(settings, db.url, host=args.host or settings.api_host,
                     port=args.port or settings.api_port)


if __name__ == "__main__":
    sys.exit(main())
