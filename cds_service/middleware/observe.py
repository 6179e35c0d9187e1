"""What both the access log and the metrics need from a finished call."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds_service.middleware.call_record import CallRecord, record_of_scope
from cds_service.safe_log import where_raised

logger = logging.getLogger("cds_service.app")

UNMATCHED = "unmatched"


@dataclass(frozen=True)
class FinishedCall:
    method: str
    #: The route template (`/cds-services/{service_id}`), never the path a caller chose.
    route: str
    status: int
    seconds: float
    record: CallRecord


def route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


Observer = Callable[[FinishedCall], None]


class ObserveMiddleware:
    """Calls each of `observers` once per HTTP request, in order, after its answer was sent or
    the app inside failed (status 500; the innermost last-resort middleware answers a route's
    exception before it gets here). One middleware serves the metrics and the access log: each
    layer of middleware costs every call a wrapped `send` and a coroutine."""

    def __init__(self, app: ASGIApp, observers: Sequence[Observer]) -> None:
        self.app = app
        self.observers = tuple(observers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        record = record_of_scope(scope)
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BaseException as exc:
            status = 500
            record.reason = f"internal error: {where_raised(exc)}"
            raise
        finally:
            call = FinishedCall(
                method=scope["method"],
                route=route_of(scope),
                status=status,
                seconds=time.perf_counter() - began,
                record=record,
            )
            for observe in self.observers:
                # One observer's fault (a metric) must not cost the call its access-log line.
                try:
                    observe(call)
                except Exception as exc:
                    logger.error("observing a finished call failed: %s", where_raised(exc))
