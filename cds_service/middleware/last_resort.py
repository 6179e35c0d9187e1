"""The last resort for an exception no route handled: a JSON 500, logged by type and place.

Starlette's own error middleware answers in plain text (or with an app handler) and then
re-raises the exception to the server, and uvicorn logs it with its traceback, which can quote
patient data. This middleware is the one place an unexpected exception is answered: the app
installs it innermost, so the access log and the metrics see the 500 and its reason, and
outermost, so a fault in the other middleware is answered the same way; it never lets an
exception through.
"""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds_service.middleware.call_record import record_of_scope
from cds_service.safe_log import where_raised

logger = logging.getLogger("cds_service.app")
_BODY = json.dumps({"error": {"status": 500, "message": "internal error"}}).encode()


class LastResortMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as exc:
            record_of_scope(scope).reason = f"internal error: {where_raised(exc)}"
            logger.error(
                "unexpected error on %s %s: %s",
                scope.get("method"),
                scope.get("path"),
                where_raised(exc),
            )
            if not started:
                headers = [(b"content-type", b"application/json")]
                await send({"type": "http.response.start", "status": 500, "headers": headers})
                await send({"type": "http.response.body", "body": _BODY})
