"""The executors every install has (docs/workflows.md, "Executors")."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from dagq.config import get_settings
from dagq.workers import safe_http
from dagq.workers.context import current
from dagq.workers.errors import FatalError
from dagq.workers.registry import executor


@executor("builtin.noop")
def noop(payload: dict[str, Any]) -> dict[str, Any]:
    return {}


@executor("builtin.echo")
def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


@executor("builtin.merge")
def merge(payload: dict[str, Any]) -> dict[str, Any]:
    """Merge the dependencies' outputs; a non-object output goes under its dep's key."""
    merged: dict[str, Any] = {}
    for key, outputs in payload.get("deps", {}).items():
        if isinstance(outputs, dict):
            merged.update(outputs)
        else:
            merged[key] = outputs
    return merged


@executor("builtin.sleep")
def sleep(payload: dict[str, Any]) -> dict[str, Any]:
    """Sleep `params.seconds` in short slices, so timeouts and cancels interrupt it
    promptly (the worker heartbeats its lease meanwhile)."""
    seconds = float(payload.get("params", {}).get("seconds", 1))
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))
    return {"slept_s": seconds}


@executor("builtin.stream")
def stream(payload: dict[str, Any]) -> dict[str, Any]:
    """Stream `params.chunks` chunks (10), one every `params.interval_s` (0.05 s): each
    is `params.text` ("chunk {i} ") with `{i}` replaced by its index and `{t}` by the
    time it was sent (Unix seconds: the bench measures delivery with it). Returns them
    joined, and how many."""
    params = payload.get("params", {})
    try:
        count = int(params.get("chunks", 10))
        interval = float(params.get("interval_s", 0.05))
    except (TypeError, ValueError):
        raise FatalError("builtin.stream: params.chunks and params.interval_s must be "
                         "numbers") from None
    template = str(params.get("text", "chunk {i} "))
    node, pieces = current(), []
    started = time.monotonic()
    for i in range(max(count, 0)):
        # A steady pace: each chunk at its own time, however long the writes took.
        while (wait := started + i * interval - time.monotonic()) > 0:
            time.sleep(min(wait, 0.05))  # in slices: a cancel interrupts it promptly
        piece = template.replace("{i}", str(i))
        if "{t}" in piece:
            piece = piece.replace("{t}", f"{time.time():.6f}")
        node.stream(piece)
        pieces.append(piece)
    return {"chunks": len(pieces), "text": "".join(pieces)}


def fail(payload: dict[str, Any]) -> dict[str, Any]:
    """Fail the first `params.times` attempts (all, by default), then succeed;
    `params.fatal: true` raises a non-retryable error instead."""
    params = payload.get("params", {})
    if params.get("fatal"):
        raise FatalError(params.get("message", "builtin.fail: fatal failure"))
    attempt = current().attempt
    times = params.get("times")
    if times is None or attempt <= int(times):
        raise RuntimeError(params.get("message", f"builtin.fail: attempt {attempt} fails"))
    return {"attempt": attempt}


def crash(payload: dict[str, Any]) -> dict[str, Any]:
    """Kill this worker process with SIGKILL on the first `params.times` attempts."""
    attempt = current().attempt
    if attempt <= int(payload.get("params", {}).get("times", 1)):
        os.kill(os.getpid(), signal.SIGKILL)
    return {"attempt": attempt}


def register_test_executors() -> None:
    """builtin.fail and builtin.crash, only with DAGQ_TEST_EXECUTORS=on: one tenant's
    builtin.crash SIGKILLs workers that other tenants' nodes share."""
    executor("builtin.fail")(fail)
    executor("builtin.crash")(crash)


@executor("builtin.http")
def http(payload: dict[str, Any]) -> dict[str, Any]:
    """An HTTP call whose JSON reply is the output. 4xx (but 408/429) fail for good.
    Addresses that are not public are refused unless DAGQ_HTTP_ALLOW lists them; a reply
    over the output limit (DAGQ_MAX_OUTPUT_BYTES) fails for good, unread past it."""
    params = payload.get("params", {})
    url = params.get("url")
    if not isinstance(url, str) or not url:
        raise FatalError("builtin.http needs params.url")
    settings = get_settings()
    response = safe_http.request(
        str(params.get("method", "GET")).upper(), url, json=params.get("json"),
        timeout_s=float(params.get("timeout_s", 30)), max_bytes=settings.max_output_bytes,
        allow=safe_http.Allow.parse(settings.http_allow_list),
    )
    if response.status_code >= 400:
        message = f"HTTP {response.status_code} from {url}: {response.text[:500]}"
        if response.status_code < 500 and response.status_code not in (408, 429):
            raise FatalError(message)
        raise RuntimeError(message)
    try:
        body = response.json()
    except ValueError:
        return {"status": response.status_code, "text": response.text}
    return body if isinstance(body, dict) else {"status": response.status_code, "json": body}
