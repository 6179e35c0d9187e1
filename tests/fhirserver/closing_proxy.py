"""A TCP proxy in front of the FHIR test server that closes connections the way servers do.

A FHIR server (or a load balancer in front of it) closes keep-alive connections it has kept
idle. When that close crosses the client's next request on the connection, or is never
announced (a middlebox that forgets the connection), the client sends a request on a
connection nobody answers: the request fails although the server is up. The proxy makes that
happen on purpose, at the socket level, so the service's real HTTP client meets it:

- ``"reused"``: a connection is closed, unanswered, when a second request arrives on it;
- ``"all"``: every connection is closed, unanswered, on its first request.

It runs on the test's own event loop (``async with ClosingProxy(server, mode) as proxy``).
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Literal

from .runner import HOST, FhirTestServer

Mode = Literal["reused", "all"]


class ClosingProxy:
    """Forwards to ``server``; ``dropped`` counts requests it closed a connection on."""

    def __init__(self, server: FhirTestServer, mode: Mode) -> None:
        self.target = server
        self.mode: Mode = mode
        self.connections = 0
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        """The FHIR base through the proxy (same path as the server's)."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return self.target.base_url.replace(f":{self.target.port}/", f":{port}/", 1)

    async def __aenter__(self) -> ClosingProxy:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        answered = asyncio.Event()
        upstream: asyncio.StreamWriter | None = None
        pump: asyncio.Task[None] | None = None
        try:
            while data := await reader.read(65536):
                if self.mode == "all" or (self.mode == "reused" and answered.is_set()):
                    # A request the server will never answer: close the connection, unanswered.
                    self.dropped += 1
                    return
                if upstream is None:
                    up_reader, upstream = await asyncio.open_connection(HOST, self.target.port)
                    pump = asyncio.create_task(self._pump(up_reader, writer, answered))
                upstream.write(data)
                await upstream.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if pump is not None:
                pump.cancel()
            if upstream is not None:
                upstream.close()
            writer.close()
            self._tasks.discard(task)

    @staticmethod
    async def _pump(
        source: asyncio.StreamReader, sink: asyncio.StreamWriter, answered: asyncio.Event
    ) -> None:
        """The server's answers, back to the client; the first byte marks the connection used."""
        try:
            while data := await source.read(65536):
                answered.set()
                sink.write(data)
                await sink.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
