"""Reading a JSON request body within a size and a nesting limit."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import Request
from starlette.requests import ClientDisconnect

from cds_service.api_errors import ApiError
from cds_service.json_limits import MAX_DEPTH, too_deep

logger = logging.getLogger("cds_service.app")


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body; 413 past `max_bytes` (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "invalid Content-Length header") from None
        if size > max_bytes:
            raise ApiError(413, f"request body exceeds {max_bytes} bytes")
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_bytes:
                raise ApiError(413, f"request body exceeds {max_bytes} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # Not an error of the service: the EHR gave up (timeout, closed panel). Nobody reads
        # the answer; the log says what happened, without a traceback.
        logger.info("client disconnected before sending the whole body on %s", request.url.path)
        raise ApiError(400, "the client disconnected before the body was complete") from None
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    """The body as JSON; 400 if it is empty, not JSON, or nested too deeply to validate."""
    if not raw.strip():
        raise ApiError(400, "the request body is empty; a JSON object is required")
    try:
        body = orjson.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApiError(400, "the request body is not valid JSON") from None
    if too_deep(raw):
        raise ApiError(400, f"the request body nests JSON deeper than {MAX_DEPTH} levels")
    return body


async def read_json(request: Request, max_bytes: int) -> Any:
    return parse_json(await read_body(request, max_bytes))
