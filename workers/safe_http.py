"""builtin.http's guard against server-side request forgery: dagq.runtime.safe_http (shared
with webhook deliveries), with its refusals as FatalErrors, so the node fails at once
without a retry."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

from dagq.runtime import safe_http as guard
from dagq.runtime.safe_http import DEFAULT_MAX_BYTES, Reply, Resolver, refusal
from dagq.workers.errors import FatalError

__all__ = ["AddressRefused", "Allow", "Reply", "refusal", "request"]


class AddressRefused(FatalError):
    """builtin.http would reach an address that is not public and not in DAGQ_HTTP_ALLOW."""


def _fatal(exc: guard.RequestRefused) -> FatalError:
    kind = AddressRefused if isinstance(exc, guard.AddressRefused) else FatalError
    return kind(str(exc))


class Allow(guard.Allow):
    """DAGQ_HTTP_ALLOW (see dagq.runtime.safe_http.Allow); a bad entry is a FatalError."""

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allow:
        try:
            parsed = guard.Allow.parse(entries)
        except guard.RequestRefused as exc:
            raise _fatal(exc) from None
        return cls(parsed.hosts, parsed.networks)


def request(method: str, url: str, *, json: Any = None, timeout_s: float = 30.0,
            max_bytes: int = DEFAULT_MAX_BYTES, allow: guard.Allow | None = None,
            resolve: Resolver = socket.getaddrinfo) -> Reply:
    """dagq.runtime.safe_http.request, its refusals FatalErrors."""
    try:
        return guard.request(method, url, json=json, timeout_s=timeout_s, max_bytes=max_bytes,
                             allow=allow, resolve=resolve)
    except guard.RequestRefused as exc:
        raise _fatal(exc) from None
