"""Bounds on what slow or idle clients may hold: time to send a request, connections, descriptors.

uvicorn times out idle keep-alive connections only after a response; a connection that sends
nothing, or its headers a byte at a time, is held for ever, and each holds a file descriptor.
1,100 of them exhaust a 1024-descriptor limit and the worker can accept nothing more. So each
worker here:

- closes a connection whose request headers are not complete `header_timeout_s` after the
  connection opened (or after the first byte of a later request on it), and one whose body is not
  complete `body_timeout_s` after its headers;
- holds at most `max_connections` connections: one more makes it close the oldest connection
  still sending its headers, or the new one if there is none (HTTP/1.1 answers one request at a
  time per connection, so this is also the limit of requests in progress per worker);
- starts only when the descriptor limit covers that many connections plus a reserve for the
  listening socket, logs, the database and outbound FHIR and JWKS fetches.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Descriptors a worker needs besides client connections: the listening socket, stdio and logs,
#: the database, the outbound FHIR-fetch and JWKS pools (aiohttp, 100 connections at most), and
#: the interpreter's own.
RESERVED_DESCRIPTORS = 192


@dataclass(frozen=True)
class Limits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: int = 5
    max_connections: int = 768
    backlog: int = 2048
    graceful_shutdown_s: int = 20

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Limits:
        return cls(
            header_timeout_s=args.header_timeout,
            body_timeout_s=args.body_timeout,
            keep_alive_s=args.keep_alive,
            max_connections=args.max_connections,
            backlog=args.backlog,
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    d = Limits()
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=float(env("CDS_HEADER_TIMEOUT_S", d.header_timeout_s)),
        help="seconds to send the request headers (CDS_HEADER_TIMEOUT_S)",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=float(env("CDS_BODY_TIMEOUT_S", d.body_timeout_s)),
        help="seconds to send the body once the headers are in (CDS_BODY_TIMEOUT_S)",
    )
    parser.add_argument(
        "--keep-alive",
        type=int,
        default=int(env("CDS_KEEP_ALIVE_S", d.keep_alive_s)),
        help="seconds an idle keep-alive connection is kept (CDS_KEEP_ALIVE_S)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=int(env("CDS_MAX_CONNECTIONS", d.max_connections)),
        help="open connections per worker; more are closed at once (CDS_MAX_CONNECTIONS)",
    )
    parser.add_argument("--backlog", type=int, default=int(env("CDS_BACKLOG", d.backlog)))


def descriptor_budget(limits: Limits) -> str | None:
    """Raise the soft descriptor limit to the hard one; None if it covers the budget, else why."""
    needed = limits.max_connections + RESERVED_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard and hard != resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < needed:
        return (
            f"CDS_MAX_CONNECTIONS={limits.max_connections} needs {needed} file descriptors per "
            f"worker ({RESERVED_DESCRIPTORS} reserved); the limit is {soft} (ulimit -n): lower "
            "CDS_MAX_CONNECTIONS or raise the limit"
        )
    return None


class _Deadline:
    """One timer per connection that closes it when the current phase of a request overruns."""

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: Any) -> None:
        self._loop = loop
        self._transport = transport
        self._timer: asyncio.TimerHandle | None = None

    @property
    def armed(self) -> bool:
        return self._timer is not None

    def arm(self, seconds: float) -> None:
        self.disarm()
        self._timer = self._loop.call_later(seconds, self._expire)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if not self._transport.is_closing():
            self._transport.close()


def current_limits() -> Limits:
    """The limits of this process, from the environment the launcher set for its workers."""
    env = os.environ.get
    d = Limits()
    return Limits(
        header_timeout_s=float(env("CDS_HEADER_TIMEOUT_S", d.header_timeout_s)),
        body_timeout_s=float(env("CDS_BODY_TIMEOUT_S", d.body_timeout_s)),
        keep_alive_s=int(env("CDS_KEEP_ALIVE_S", d.keep_alive_s)),
        max_connections=int(env("CDS_MAX_CONNECTIONS", d.max_connections)),
        backlog=int(env("CDS_BACKLOG", d.backlog)),
    )


_limits: Limits | None = None


def limits_in_force() -> Limits:
    """This process's limits: set by `export`, or read once from the environment."""
    global _limits
    if _limits is None:
        _limits = current_limits()
    return _limits


def export(limits: Limits) -> None:
    """Set the limits here and hand them to the workers (spawned: they read the environment)."""
    global _limits
    _limits = limits
    os.environ.update(
        CDS_HEADER_TIMEOUT_S=str(limits.header_timeout_s),
        CDS_BODY_TIMEOUT_S=str(limits.body_timeout_s),
        CDS_KEEP_ALIVE_S=str(limits.keep_alive_s),
        CDS_MAX_CONNECTIONS=str(limits.max_connections),
        CDS_BACKLOG=str(limits.backlog),
    )


#: uvicorn `http=` import strings of the bounded protocols.
PROTOCOLS = {
    "httptools": "cds_service.slow_clients:BoundedHttpToolsProtocol",
    "h11": "cds_service.slow_clients:BoundedH11Protocol",
}


#: This worker's connections still sending request headers, oldest first.
_awaiting_headers: dict[int, Any] = {}


def _awaiting(protocol: Any) -> None:
    _awaiting_headers[id(protocol)] = protocol.transport


def _not_awaiting(protocol: Any) -> None:
    _awaiting_headers.pop(id(protocol), None)


def _admit(protocol: Any, transport: Any, limits: Limits) -> bool:
    """Past the per-worker connection limit, make room by closing the oldest connection still
    sending its headers (a client that sends its request at once is never that one for long);
    if every connection is past its headers, close the new one. False if it was closed."""
    _awaiting(protocol)
    if len(protocol.connections) <= limits.max_connections:
        return True
    for key, victim in _awaiting_headers.items():
        if key != id(protocol):
            del _awaiting_headers[key]
            victim.close()
            return True
    _not_awaiting(protocol)
    protocol.connections.discard(protocol)
    transport.close()
    return False


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the header and body deadlines and the connection limit."""

    deadline: _Deadline
    _phase = ""

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        self.limits = limits_in_force()
        super().connection_made(transport)
        self.deadline = _Deadline(self.loop, transport)
        if _admit(self, transport, self.limits):
            self.deadline.arm(self.limits.header_timeout_s)

    def data_received(self, data: bytes) -> None:
        if not self.deadline.armed and self.conn.their_state is h11.IDLE:
            self.deadline.arm(self.limits.header_timeout_s)  # a later request begins
            _awaiting(self)
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            _not_awaiting(self)
            if self._phase != "body":
                self._phase = "body"
                self.deadline.arm(self.limits.body_timeout_s)
        elif state is not h11.IDLE:
            _not_awaiting(self)
            self._phase = ""
            self.deadline.disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        _not_awaiting(self)
        self.deadline.disarm()
        super().connection_lost(exc)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the header and body deadlines and the connection limit."""

    deadline: _Deadline

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        self.limits = limits_in_force()
        super().connection_made(transport)
        self.deadline = _Deadline(self.loop, transport)
        if _admit(self, transport, self.limits):
            self.deadline.arm(self.limits.header_timeout_s)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self.deadline.armed:
            self.deadline.arm(self.limits.header_timeout_s)  # a later request begins
            _awaiting(self)

    def on_headers_complete(self) -> None:
        _not_awaiting(self)
        super().on_headers_complete()
        self.deadline.arm(self.limits.body_timeout_s)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.deadline.disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        _not_awaiting(self)
        self.deadline.disarm()
        super().connection_lost(exc)
