"""A request id for every call: the caller's `X-Request-ID` when usable, else a new one.

It is returned in the `X-Request-ID` response header, kept in `scope["state"]["request_id"]`
and in a context variable, so every log line of the call can name it and an EHR's support
team and ours can find the same call.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
#: Visible ASCII without spaces, at most 128 characters: anything else is replaced, so a
#: caller cannot put a line break, a huge string or control characters into our logs.
_USABLE = re.compile(r"[!-~]{1,128}")

_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being answered by this task, if any."""
    return _current.get()


def request_id_of(given: str | None) -> str:
    if given is not None and _USABLE.fullmatch(given):
        return given
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(Headers(scope=scope).get(HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        token = _current.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _current.reset(token)
