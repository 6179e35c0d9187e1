"""The JSON error answers of the CDS Hooks routes: `{"error": {"status": N, "message": "..."}}`.

Every answer is JSON, errors included: the EHR shows or logs what it gets, and an HTML page or a
stack trace would be unreadable there and could quote patient data. An exception nothing here
handles is answered by cds_service.middleware.last_resort, the one place that does.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from cds_service.middleware.call_record import call_record


class ApiError(Exception):
    """An error answered as JSON with `status`; `headers` are added to the response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"status": status, "message": message, **extra}}


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(error_body(status, message, **extra), status_code=status, headers=headers)


class FastJSONResponse(JSONResponse):
    """JSON rendered by orjson: several times faster than the standard library for cards."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app serves at the request's path."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error the app raises as the JSON error body."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        # Messages are built by the service (element paths, prefetch keys, fixed phrases).
        call_record(request).reason = exc.message
        return error_response(exc.status, exc.message, exc.headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: "not found", 405: "method not allowed"}.get(exc.status_code)
        message = message or str(exc.detail)
        call_record(request).reason = message
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route of the path only.
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_response(exc.status_code, message, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        call_record(request).reason = "invalid request"
        return error_response(422, "invalid request")
