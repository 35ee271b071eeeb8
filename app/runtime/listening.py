"""LISTEN connections: where they go (DAGQ_LISTEN_URL, or none with DAGQ_LISTEN=off),
and the start-up probe that warns when LISTEN would go through a transaction pooler,
where it never fires (dagq.runtime.pooler).

Every LISTEN user (the API's event hub, the workers' queue listener, the Dramatiq
results and rate-limit backends) also polls, so without LISTEN nothing is lost: work
starts and events stream at the polling interval instead of at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dagq.config import Settings, get_settings
from dagq.runtime import pooler
from dagq.runtime.db import connect

log = logging.getLogger("dagq.db")

# How long the LISTEN probe waits for its own notification.
LISTEN_PROBE_S = 1.0


NEVER_FIRES = ("LISTEN goes through a transaction pooler and never fires: set "
               "DAGQ_LISTEN_URL to a direct (or session-mode) URL, or DAGQ_LISTEN=off; "
               "until then dagq polls")

_fires: dict[tuple[str, str], bool] = {}
_warned_about: dict[str, bool] = {}
_fires_lock = threading.Lock()


def listen_fires(listen_url: str, notify_url: str) -> bool:
    """Whether a LISTEN on `listen_url` hears a NOTIFY sent on `notify_url` (once per
    process, cached). A direct connection is not probed. Through a pooler a LISTEN is
    tried: the notification must arrive within LISTEN_PROBE_S (a session-mode pooler
    passes, a transaction-mode one does not). A probe that cannot run says yes: the
    LISTEN connection then retries, and the polling covers meanwhile."""
    if not pooler.detect(listen_url).pooled:
        return True
    key = (listen_url, notify_url)
    with _fires_lock:
        if key not in _fires:
            try:
                _fires[key] = _listen_fires(listen_url, notify_url)
            except psycopg.Error:
                return True
        return _fires[key]


def listen_warning(url: str, settings: Settings | None = None) -> str | None:
    """The start-up probe's one line when the LISTEN connections of the database at
    `url` would never fire (they go through a transaction pooler); else None."""
    s = settings or get_settings()
    if s.listen == "off":
        return None
    return None if listen_fires(s.listen_url or url, url) else NEVER_FIRES


def _listen_fires(listen_url: str, notify_url: str) -> bool:
    channel = f"dagq_probe_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_plain(listen_url), autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        with psycopg.connect(_plain(notify_url), autocommit=True) as sender:
            sender.execute("SELECT pg_notify(%s, 'probe')", (channel,))
        fired = any(True for _ in listener.notifies(timeout=LISTEN_PROBE_S, stop_after=1))
        with contextlib.suppress(psycopg.Error):
            # a pooled session must not keep it
            listener.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel)))
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
    set, else `url`. None (poll only) with DAGQ_LISTEN=off, or when a LISTEN there would
    never fire (a transaction pooler: `listen_fires`), which would only leave LISTEN
    registrations on server sessions the pooler hands to other clients."""
    s = settings or get_settings()
    if s.listen == "off":
        return None
    target = s.listen_url or url
    if listen_fires(target, url):
        return target
    with _fires_lock:  # said once per process (the Dramatiq backends ask at each wait)
        first, _warned_about[target] = target not in _warned_about, True
    if first:
        log.warning(NEVER_FIRES)
    return None


class Polling:
    """Stands in for a LISTEN connection when there is none (listen_target None):
    nothing is listened to, and waiting for a notification is waiting out the timeout
    (the caller then polls)."""

    def execute(self, *_: object) -> None:
        return None

    def notifies(self, *, timeout: float, stop_after: int | None = None) -> Iterator[Any]:
        time.sleep(max(0.0, timeout))
        return iter(())


@contextlib.contextmanager
def listen_connection(url: str) -> Iterator[psycopg.Connection[Any] | Polling]:
    """An autocommit connection for LISTEN on DAGQ_LISTEN_URL (or `url`), bounded like
    every dagq session; a `Polling` stand-in when there is none (listen_target)."""
    target = listen_target(url)
    if target is None:
        yield Polling()
        return
    with connect(target, autocommit=True) as conn:
        yield conn
