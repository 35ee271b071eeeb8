"""Waits for a person (docs/forms.md): open signal waits listed with their forms, the data
of a signal checked against its wait's form, and respond links (answer a wait once,
without an API key).

Why a listing mints links: only a token's SHA-256 is stored, so a link can be shown only
when it is made. A caller that may answer the wait anyway (a key of the run's tenant, or
an admin key) gets a fresh link with every listing; earlier links stay valid (one mailed
to a person is not revoked by a dashboard that lists the waits) until their wait ends,
they expire, or one of them is used (the wait then ends: every other link of it is
refused with 410). A webhook subscription of the run's tenant gets one with its
node_waiting delivery (minted in the database as the delivery is written: migration 034).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from typing import Any

from dagq.errors import Gone, InvalidRequest, NotFound
from dagq.models import SignalResult
from dagq.spec.forms import FormError, validate_data
from dagq.store import Store

DEFAULT_RESPOND_TTL_S = 7 * 86_400.0
TOKEN_PREFIX = "dqr_"
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,200}$")
MAX_LISTED = 500
# Live (unused, unexpired) links one wait may have: a listing past it shows no new link
# for that wait (`respond: null`) rather than revoke one a person may hold.
MAX_LIVE_LINKS = 100


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    """What dagq.respond_links keeps of a token (the SQL side hashes the same way)."""
    return hashlib.sha256(token.encode()).digest()


def check_data(form: dict[str, Any] | None, data: dict[str, Any] | None,
               node_key: str) -> dict[str, Any]:
    """A signal's data checked against its wait's form (InvalidRequest naming the field),
    with the form's defaults filled in; without a form, the data as it is."""
    if form is None:
        return {} if data is None else data
    try:
        return validate_data(form, {} if data is None else data)
    except FormError as exc:
        raise InvalidRequest(f"the data does not fit the form of wait {node_key!r}: {exc}",
                             {"field": exc.field, "node": node_key}) from None


def check_signal_data(repo: Store, run_id: uuid.UUID, name: str, tenant: str | None,
                      data: dict[str, Any] | None) -> dict[str, Any] | None:
    """A signal sent with a key: its data must fit the form of every wait of the run for
    that signal (usually one); returned with the defaults filled in."""
    for row in repo.waits.signal_forms(run_id, name, tenant):
        data = check_data(row["form"], data, row["node_key"])
    return data


def _view(row: dict[str, Any]) -> dict[str, Any]:
    wait = row["wait_spec"]
    return {"run_id": row["run_id"], "node_key": row["node_key"], "tenant": row["tenant"],
            "workflow": row["workflow"], "signal": wait["signal"],
            "form": wait.get("form"), "assignees": wait.get("assignees", []),
            "waiting_since": row["started_at"], "times_out_at": row["wait_until"],
            "parent_run_id": row["parent_run_id"],
            "parent_node_key": row["parent_node_key"], "respond": None}


def _with_links(repo: Store, rows: list[dict[str, Any]], issued_to: str | None,
                ) -> list[dict[str, Any]]:
    """The waits as listed; with `issued_to` (who asks), each with a fresh respond link."""
    views = [_view(row) for row in rows]
    if issued_to is None or not rows:
        return views
    tokens = [new_token() for _ in rows]
    links = [{"hash": token_hash(token), "run_id": row["run_id"], "node_key": row["node_key"],
              "since": row["started_at"], "tenant": row["tenant"],
              "ttl_s": float(row["wait_spec"].get("respond_ttl_s", DEFAULT_RESPOND_TTL_S))}
             for token, row in zip(tokens, rows, strict=True)]
    expiries = repo.waits.insert_links(links, issued_to, MAX_LIVE_LINKS)
    for view, token, expires in zip(views, tokens, expiries, strict=True):
        if expires is not None:
            view["respond"] = {"token": token, "path": f"/respond/{token}",
                               "expires_at": expires}
    return views


def run_waits(repo: Store, run_id: uuid.UUID, tenant: str | None, *,
              issued_to: str | None) -> list[dict[str, Any]]:
    """GET /v1/runs/{id}/waits: the run's open signal waits and its child runs' (each its
    own entry, with its own link when `issued_to` names the caller)."""
    return _with_links(repo, repo.waits.run_waits(run_id, tenant), issued_to)


def open_waits(repo: Store, *, tenant: str | None, assignee: str | None, limit: int,
               issued_to: str | None) -> list[dict[str, Any]]:
    """GET /v1/waits: open signal waits of a tenant (None: every tenant's)."""
    if not 1 <= limit <= MAX_LISTED:
        raise InvalidRequest(f"limit is 1 to {MAX_LISTED}")
    return _with_links(repo, repo.waits.open_waits(tenant=tenant, assignee=assignee,
                                                   limit=limit), issued_to)


def _check_link(link: dict[str, Any] | None) -> dict[str, Any]:
    """The link may answer its wait, or why not: 404 (no such token), 410 (used, expired,
    or its wait is over)."""
    if link is None:
        raise NotFound("respond link not found")
    if link["used_at"] is not None:
        raise Gone("this respond link was already used", code="link_used")
    if link["expired"]:
        raise Gone(f"this respond link expired at {link['expires_at'].isoformat()}",
                   code="link_expired")
    if link["node_status"] != "waiting" or link["started_at"] != link["waiting_since"]:
        raise Gone("the wait this link answers is over", code="wait_closed")
    return link


def _lookup(repo: Store, token: str) -> dict[str, Any]:
    if not TOKEN_PATTERN.match(token):
        raise NotFound("respond link not found")
    return _check_link(repo.waits.respond_link(token_hash(token)))


def link_form(repo: Store, token: str) -> dict[str, Any]:
    """GET /v1/respond/{token}: what a page needs to render the wait's form."""
    link = _lookup(repo, token)
    wait = link["wait_spec"]
    return {"run_id": link["run_id"], "node_key": link["node_key"],
            "workflow": link["workflow"], "signal": wait["signal"],
            "form": wait.get("form"), "assignees": wait.get("assignees", []),
            "expires_at": link["expires_at"]}


def respond(repo: Store, token: str, data: dict[str, Any] | None) -> SignalResult:
    """POST /v1/respond/{token}: the data, checked against the form (422 naming the field,
    nothing written), answers the wait; the link is used up."""
    link = _lookup(repo, token)
    filled = check_data(link["wait_spec"].get("form"), data, link["node_key"])
    return repo.waits.respond(token_hash(token), _check_link, filled)
