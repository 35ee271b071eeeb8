"""LISTEN connections: where they go (DAGQ_LISTEN_URL, or none with DAGQ_LISTEN=off),
and the start-up probe that warns when LISTEN would go through a transaction pooler,
where it never fires (dagq.runtime.pooler).

Every LISTEN user (the API's event hub, the workers' queue listener, the Dramatiq
results and rate-limit backends) also polls, so without LISTEN nothing is lost: work
starts and events stream at the polling interval instead of at once.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dagq.config import Settings, get_settings
from dagq.runtime import pooler
from dagq.runtime.db import connect

# How long the LISTEN probe waits for its own notification.
LISTEN_PROBE_S = 1.0


def listen_warning(listen_url: str, notify_url: str) -> str | None:
    """The start-up probe: one line when LISTEN on `listen_url` would never fire (it goes
    through a transaction pooler), else None. A direct connection costs nothing here;
    through a pooler, a LISTEN is tried: a notification sent on `notify_url` must
    arrive within LISTEN_PROBE_S (a session-mode pooler passes)."""
    if not pooler.detect(listen_url).pooled:
        return None
    try:
        if _listen_fires(listen_url, notify_url):
            return None
    except psycopg.Error as exc:
        return f"the LISTEN probe could not run ({exc}); notifications may not arrive"
    return ("LISTEN goes through a transaction pooler and never fires: set "
            "DAGQ_LISTEN_URL to a direct (or session-mode) URL, or DAGQ_LISTEN=off to "
            "poll only; until then dagq polls")


def _listen_fires(listen_url: str, notify_url: str) -> bool:
    channel = f"dagq_probe_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_plain(listen_url), autocommit=True) as listener:
        listener.execute(f"LISTEN {channel}")
        with psycopg.connect(_plain(notify_url), autocommit=True) as sender:
            sender.execute("SELECT pg_notify(%s, 'probe')", (channel,))
        fired = any(True for _ in listener.notifies(timeout=LISTEN_PROBE_S, stop_after=1))
        with contextlib.suppress(psycopg.Error):
            listener.execute(f"UNLISTEN {channel}")  # a pooled session must not keep it
    return fired


def _plain(url: str) -> str:
    """`url` with the startup options a pooler refuses left out (the probes' own)."""
    if not pooler.route(url).pooled:
        return url
    params = dict(conninfo_to_dict(url))
    params.pop("options", None)
    params.setdefault("connect_timeout", "10")
    return make_conninfo("", **params)


def listen_target(url: str, settings: Settings | None = None) -> str | None:
    """The URL a LISTEN connection for the database at `url` opens: DAGQ_LISTEN_URL if
    set, else `url`; None with DAGQ_LISTEN=off (poll only)."""
    s = settings or get_settings()
    if s.listen == "off":
        return None
    return s.listen_url or url


class Polling:
    """Stands in for a LISTEN connection with DAGQ_LISTEN=off: nothing is listened to,
    and waiting for a notification is waiting out the timeout (the caller then polls)."""

    def execute(self, *_: object) -> None:
        return None

    def notifies(self, *, timeout: float, stop_after: int | None = None) -> Iterator[Any]:
        time.sleep(max(0.0, timeout))
        return iter(())


@contextlib.contextmanager
def listen_connection(url: str) -> Iterator[psycopg.Connection[Any] | Polling]:
    """An autocommit connection for LISTEN on DAGQ_LISTEN_URL (or `url`), bounded like
    every dagq session; a `Polling` stand-in with DAGQ_LISTEN=off."""
    target = listen_target(url)
    if target is None:
        yield Polling()
        return
    with connect(target, autocommit=True) as conn:
        yield conn
