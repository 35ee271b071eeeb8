"""A TCP proxy that delays every byte by a fixed time in each direction: a network link of
that latency, for `dagq bench --via proxy` and the tests of workers far from their
database (this kernel has no `tc netem`).

Each direction of a connection is a reader that stamps what it reads with the time it
may be sent and a writer that sends it then, in order. So the delay is added once per
direction whatever the amount in flight (a pipelined stream is not slowed further), as
on a real link of that latency with ample bandwidth.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

CHUNK = 65536
T = TypeVar("T")


class DelayProxy:
    """127.0.0.1:`port` (or `listen`) forwarded to `target` ((host, port), or the path of
    a unix socket) with `delay_s` added each way; runs its own event loop in a daemon
    thread between `start()` and `stop()`."""

    def __init__(self, target: tuple[str, int] | str, delay_s: float,
                 listen: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.target, self.delay_s, self.listen = target, delay_s, listen
        self.port = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="delay-proxy",
                                        daemon=True)

    def start(self) -> DelayProxy:
        self._thread.start()
        self._server = self._call(lambda: asyncio.start_server(
            self._serve, self.listen[0], self.listen[1], reuse_address=True))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            with contextlib.suppress(Exception):
                self._call(self._cancel_connections)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)

    async def _cancel_connections(self) -> None:
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
        try:
            if isinstance(self.target, str):
                upstream_r, upstream_w = await asyncio.open_unix_connection(self.target)
            else:
                upstream_r, upstream_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        for writer in (client_w, upstream_w):
            sock = writer.get_extra_info("socket")
            if sock is not None and sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        try:
            await asyncio.gather(self._pipe(client_r, upstream_w),
                                 self._pipe(upstream_r, client_w), return_exceptions=True)
        except asyncio.CancelledError:
            # stop(): end quietly (asyncio's server callback would report a cancelled
            # connection task as an error).
            for writer in (client_w, upstream_w):
                writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(send())
        try:
            while data := await reader.read(CHUNK):
                queue.put_nowait((time.monotonic() + self.delay_s, data))
        except OSError:
            pass
        finally:
            queue.put_nowait((0.0, b""))
            with contextlib.suppress(Exception):
                await sender
            with contextlib.suppress(Exception):
                writer.close()
