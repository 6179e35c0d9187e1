"""Reading the `$apply` body: size, JSON, nesting, parameters and the `data` Bundle's size.

A body over `OFFLOAD_BYTES` (a `data` Bundle holding a long record) is parsed and checked in
the reading process (cds_service.offload.pool) exactly as below, and comes back as the same
Parameters with the `data` Bundle cut down to the entries the rules read
(cds_service.offload.relevant); the event loop then reads that small body along the ordinary
path. Errors are the ones the whole body gets, with the same status and diagnostics.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from cds_service.json_limits import MAX_DEPTH, too_deep
from cds_service.offload.pool import OFFLOAD_BYTES, ReaderPool
from cds_service.offload.relevant import relevant_bundle
from cds_service.plan_operation.apply import (
    ApplyRequest,
    DataError,
    ParameterError,
    data_resources,
    parse_parameters,
)

log = logging.getLogger("cds_service.plan_operation.router")


#: What a 412 could not get, as the audit record names it: the whole record, or its keys.
RECORD_KEY = "record"


class OperationError(Exception):
    """An error answered as an OperationOutcome with an HTTP status; a 412 says what could not
    be got (`unavailable`: key -> reason) for the audit trail."""

    def __init__(
        self,
        status: int,
        code: str,
        diagnostics: str,
        unavailable: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.unavailable = dict(unavailable or {RECORD_KEY: diagnostics}) if status == 412 else {}

    def __reduce__(
        self,
    ) -> tuple[type[OperationError], tuple[int, str, str, dict[str, str]]]:
        # Sent back by the reading process: rebuilt from every field, not from args.
        return (OperationError, (self.status, self.code, self.diagnostics, self.unavailable))


async def read_raw(request: Request, max_bytes: int) -> bytes:
    """The body's bytes: 413 past `max_bytes` (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise OperationError(413, "too-costly", f"the body exceeds {max_bytes} bytes")
    raw = bytearray()
    try:
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > max_bytes:
                raise OperationError(413, "too-costly", f"the body exceeds {max_bytes} bytes")
    except ClientDisconnect:
        log.info("client disconnected before sending the whole $apply body")
        raise OperationError(400, "incomplete", "the client disconnected mid-body") from None
    return bytes(raw)


def parse_body(raw: bytes) -> Any:
    """The body as JSON (None when empty); 400 if it is not JSON or nests deeper than the FHIR
    models can validate (`cds_service.json_limits`)."""
    if not raw.strip():
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ParameterError("the body is not JSON") from None
    if too_deep(raw):
        raise ParameterError(f"the body nests JSON deeper than {MAX_DEPTH} levels")
    return body


def check_size(data: Mapping[str, Any] | None, max_resources: int) -> None:
    """413 for a `data` Bundle of more than `max_resources` entries."""
    entries = data.get("entry") if data is not None else None
    if isinstance(entries, list) and len(entries) > max_resources:
        raise OperationError(
            413,
            "too-costly",
            f"the data Bundle holds more than {max_resources} resources (CDS_MAX_RESOURCES)",
        )


@dataclass(frozen=True)
class Slimmed:
    """What the child sends back: the cut-down body as JSON, or the error to raise."""

    body: bytes | None
    error: Exception | None = None


def slim(raw: bytes, max_resources: int, today: date) -> Slimmed:
    """The body `raw` with the `data` Bundle cut down to what the rules read; or its error.

    Runs in the child process, with every check the event loop makes on the whole body (JSON,
    nesting, parameters, the Bundle's size, the subject of every resource), so nothing that is
    refused in full is answered once cut down."""
    try:
        body = parse_body(raw)
        parsed = parse_parameters(body)
        check_size(parsed.data, max_resources)
        if parsed.data is not None:
            data_resources(parsed.data, parsed.patient_id)
    except (ParameterError, DataError, OperationError) as exc:
        return Slimmed(None, exc)
    if parsed.data is None:
        return Slimmed(bytes(raw))
    start = parsed.period_start or today
    for parameter in body["parameter"]:
        if parameter["name"] == "data":
            parameter["resource"] = relevant_bundle(parameter["resource"], start)
    return Slimmed(orjson.dumps(body))


async def read_parameters(
    request: Request, max_bytes: int, max_resources: int, today: date, pool: ReaderPool
) -> ApplyRequest:
    """The POST form's parameters; raises OperationError, ParameterError or DataError."""
    raw = await read_raw(request, max_bytes)
    if len(raw) > OFFLOAD_BYTES:
        slimmed = await pool.run(slim, raw, max_resources, today)
        if slimmed.error is not None:
            raise slimmed.error
        assert slimmed.body is not None
        raw = slimmed.body
    parsed = parse_parameters(parse_body(raw))
    check_size(parsed.data, max_resources)
    return parsed
