"""Client.events() / AsyncClient.events() when a stream ends cleanly before the run's
terminal event (an API restarting gracefully ends its streams): the client reconnects
with Last-Event-ID and yields every stored event, even when the run finished meanwhile,
and an API that is briefly unreachable is waited for, not reported at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from dagq import AsyncClient, Client
from dagq.client import RetryPolicy
from tests.harness.drive import drive
from tests.harness.live_api import CHAIN, LiveApi

FAST = RetryPolicy(attempts=2, initial_s=0.01, max_s=0.05, reconnect_for_s=30)


def is_stream(request: httpx.Request) -> bool:
    return request.url.path.endswith("/events") and \
        request.headers.get("accept") == "text/event-stream"


def first_event_end(buffer: bytes) -> int | None:
    """Where the first SSE message of `buffer` ends (after its blank line), if it does."""
    ends = [i + len(sep) for sep in (b"\r\n\r\n", b"\n\n") if (i := buffer.find(sep)) >= 0]
    return min(ends) if ends else None


class _FirstEventOnly(httpx.SyncByteStream):
    """The body up to its first event's blank line (or nothing, with keep=0); then
    `at_end()`, and a clean EOF."""

    def __init__(self, inner: httpx.SyncByteStream, keep: int,
                 at_end: Callable[[], None]) -> None:
        self.inner, self.keep, self.at_end = inner, keep, at_end

    def __iter__(self) -> Iterator[bytes]:
        buffer = b""
        for chunk in self.inner if self.keep else ():
            buffer += chunk
            if (end := first_event_end(buffer)) is not None:
                yield buffer[:end]
                break
        self.at_end()

    def close(self) -> None:
        self.inner.close()


class _AsyncFirstEventOnly(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, keep: int,
                 at_end: Callable[[], None]) -> None:
        self.inner, self.keep, self.at_end = inner, keep, at_end

    async def __aiter__(self) -> AsyncIterator[bytes]:
        buffer = b""
        if self.keep:
            async for chunk in self.inner:
                buffer += chunk
                if (end := first_event_end(buffer)) is not None:
                    yield buffer[:end]
                    break
        self.at_end()

    async def aclose(self) -> None:
        await self.inner.aclose()


def _cut(response: httpx.Response, stream: httpx.SyncByteStream | httpx.AsyncByteStream,
         ) -> httpx.Response:
    return httpx.Response(response.status_code, headers=response.headers, stream=stream,
                          extensions=response.extensions)


class EndsFirstStream(httpx.HTTPTransport):
    """Ends the first event stream cleanly after `keep` (0 or 1) events, running `at_end`
    then (the run finishes while the client is between connections). With `down_for`,
    the next `down_for` requests after that fail to connect (the API restarting)."""

    def __init__(self, at_end: Callable[[], None], keep: int, down_for: int) -> None:
        super().__init__()
        self.at_end, self.keep, self.down_for = at_end, keep, down_for
        self.streams = 0
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.streams and self.down_for:
            self.down_for -= 1
            raise httpx.ConnectError("connection refused (the API restarts)", request=request)
        response = super().handle_request(request)
        if not is_stream(request) or self.streams:
            return response
        self.streams += 1
        assert isinstance(response.stream, httpx.SyncByteStream)
        return _cut(response, _FirstEventOnly(response.stream, self.keep, self.at_end))


class AsyncEndsFirstStream(httpx.AsyncHTTPTransport):
    def __init__(self, at_end: Callable[[], None], keep: int, down_for: int) -> None:
        super().__init__()
        self.at_end, self.keep, self.down_for = at_end, keep, down_for
        self.streams = 0
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.streams and self.down_for:
            self.down_for -= 1
            raise httpx.ConnectError("connection refused (the API restarts)", request=request)
        response = await super().handle_async_request(request)
        if not is_stream(request) or self.streams:
            return response
        self.streams += 1
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return _cut(response, _AsyncFirstEventOnly(response.stream, self.keep, self.at_end))


def check(transport: EndsFirstStream | AsyncEndsFirstStream, seen: list, stored: list,
          ) -> None:
    assert transport.streams == 1 and transport.down_for == 0
    assert len(stored) == 15 and stored[-1].type == "run_succeeded"
    assert seen == stored  # none lost, none twice
    resumed = [r for r in transport.requests if is_stream(r)][1:]
    last_id = str(stored[0].id) if transport.keep else None
    assert resumed and resumed[-1].headers.get("last-event-id") == last_id


# (events the first stream brings, requests that fail to connect after it ended)
CASES = [(1, 0), (1, 5), (0, 5)]


@pytest.mark.parametrize(("keep", "down_for"), CASES)
def test_events_survive_a_clean_early_end_while_the_run_finishes(
        api: LiveApi, keep: int, down_for: int) -> None:
    transport = EndsFirstStream(lambda: drive(api.repo), keep, down_for)
    with Client(api.url, api.acme, retry_policy=FAST, transport=transport) as client:
        run_id = client.submit(CHAIN).run_id
        seen = list(client.events(run_id))
        stored = list(client.events(run_id, follow=False))
    check(transport, seen, stored)


@pytest.mark.parametrize(("keep", "down_for"), CASES)
def test_async_events_survive_a_clean_early_end_while_the_run_finishes(
        api: LiveApi, keep: int, down_for: int) -> None:
    transport = AsyncEndsFirstStream(lambda: drive(api.repo), keep, down_for)

    async def scenario() -> tuple[list, list]:
        async with AsyncClient(api.url, api.acme, retry_policy=FAST,
                               transport=transport) as client:
            run_id = (await client.submit(CHAIN)).run_id
            seen = [e async for e in client.events(run_id)]
            return seen, [e async for e in client.events(run_id, follow=False)]

    seen, stored = asyncio.run(scenario())
    check(transport, seen, stored)
