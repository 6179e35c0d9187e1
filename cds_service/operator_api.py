"""The operator API: the audit trail as FHIR GuidanceResponses, and feedback analytics.

Never public: every route needs `Authorization: Bearer <CDS_OPERATOR_TOKEN>`, a credential
apart from the CDS clients' JWTs (a CDS client can never read the audit trail). Without
CDS_OPERATOR_TOKEN the routes answer 401 to everyone. The audit trail holds patient data.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from cds_service.fhir.bundle import searchset
from cds_service.openapi import fhir_body, ref
from cds_service.plan_operation.body import OperationError
from cds_service.plan_operation.router import (
    error_response,
    fhir_response,
    read_response,
)
from cds_service.store import Store

log = logging.getLogger("cds_service.operator")

DEFAULT_COUNT = 50
MAX_COUNT = 500
ANALYTICS_DAYS = 30
SEARCH_PARAMETERS = ("subject", "patient", "request", "date", "_count", "_offset")
_PREFIXES = ("eq", "ge", "gt", "le", "lt")


class OperatorCredential:
    """Checks the operator bearer token in constant time (only its digest is kept)."""

    def __init__(self, token: str | None) -> None:
        self._digest = hashlib.sha256(token.encode()).digest() if token else None

    def allows(self, request: Request) -> bool:
        if self._digest is None:
            return False
        parts = (request.headers.get("authorization") or "").split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            return False
        return hmac.compare_digest(hashlib.sha256(parts[1].encode()).digest(), self._digest)


@dataclass(frozen=True)
class DateBounds:
    since: datetime | None = None
    until: datetime | None = None
    since_inclusive: bool = True
    until_inclusive: bool = False


def _moment(text: str) -> tuple[datetime, bool]:
    """A FHIR date or dateTime; True when it was a whole day."""
    if len(text) == 10:
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC), True
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("a dateTime needs a time zone")
    return moment.astimezone(UTC), False


def date_bounds(values: list[str]) -> DateBounds:
    """`date=ge2026-12-01&date=lt2026-12-08` and the like (eq, ge, gt, le, lt)."""
    bounds = DateBounds()
    for raw in values:
        prefix, text = (raw[:2], raw[2:]) if raw[:2] in _PREFIXES else ("eq", raw)
        try:
            moment, whole_day = _moment(text)
        except ValueError:
            raise OperationError(400, "invalid", "date must be YYYY-MM-DD or a dateTime") from None
        end = moment + timedelta(days=1) if whole_day else moment
        if prefix in ("eq", "ge"):
            bounds = DateBounds(moment, bounds.until, True, bounds.until_inclusive)
        if prefix == "gt":
            bounds = DateBounds(end, bounds.until, whole_day, bounds.until_inclusive)
        if prefix in ("eq", "le"):
            bounds = DateBounds(bounds.since, end, bounds.since_inclusive, not whole_day)
        if prefix == "lt":
            bounds = DateBounds(bounds.since, moment, bounds.since_inclusive, False)
    return bounds


def _int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise OperationError(400, "invalid", f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def _subject(query: Mapping[str, str]) -> str | None:
    value = query.get("subject") or query.get("patient")
    if value is None:
        return None
    return value if value.startswith("Patient/") else f"Patient/{value}"


def public_base(request: Request, configured: str) -> str:
    return configured or str(request.base_url).rstrip("/")


def _fhir_responses(own: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """A route's own answers and those every operator FHIR route gives (OpenAPI)."""
    every = {401: "no valid operator credential", 503: "the database is unavailable"}
    return {status: fhir_body(text) for status, text in sorted({**own, **every}.items())}


def build_operator_router(store: Store, credential: OperatorCredential, base_url: str) -> APIRouter:
    api = APIRouter(tags=["Operator"])

    def refused_fhir() -> Response:
        return error_response(OperationError(401, "login", "operator credential required"))

    @api.get(
        "/fhir/GuidanceResponse/{response_id}",
        response_class=Response,
        responses=_fhir_responses({200: "the GuidanceResponse", 404: "unknown id"}),
    )
    async def read_guidance_response(request: Request, response_id: str) -> Response:
        if not credential.allows(request):
            return refused_fhir()
        try:
            resource = await store.audit.read(response_id)
        except SQLAlchemyError:
            return _unavailable_fhir()
        return read_response("GuidanceResponse", response_id, resource)

    @api.get(
        "/fhir/GuidanceResponse",
        response_class=Response,
        responses=_fhir_responses(
            {200: "a searchset Bundle", 400: "unsupported or malformed parameter"}
        ),
    )
    async def search_guidance_responses(request: Request) -> Response:
        if not credential.allows(request):
            return refused_fhir()
        query = request.query_params
        try:
            unknown = sorted(set(query.keys()) - set(SEARCH_PARAMETERS))
            if unknown:
                raise OperationError(
                    400, "not-supported", f"unsupported search parameter(s): {', '.join(unknown)}"
                )
            bounds = date_bounds(query.getlist("date"))
            count = _int(query, "_count", DEFAULT_COUNT, 1, MAX_COUNT)
            offset = _int(query, "_offset", 0, 0, 10**9)
        except OperationError as exc:
            return error_response(exc)
        try:
            page = await store.audit.search(
                subject=_subject(query),
                request=query.get("request"),
                since=bounds.since,
                until=bounds.until,
                since_inclusive=bounds.since_inclusive,
                until_inclusive=bounds.until_inclusive,
                count=count,
                offset=offset,
            )
        except SQLAlchemyError:
            return _unavailable_fhir()
        base = public_base(request, base_url) + "/fhir"
        kept = [(k, v) for k, v in query.multi_items() if k != "_offset"]

        def page_url(at: int) -> str:
            return f"{base}/GuidanceResponse?" + urlencode([*kept, ("_offset", str(at))])

        more = offset + len(page.resources) < page.total
        return fhir_response(
            searchset(
                base,
                page.resources,
                self_url=page_url(offset),
                total=page.total,
                next_url=page_url(offset + count) if more else None,
                previous_url=page_url(max(0, offset - count)) if offset else None,
            )
        )

    @api.get(
        "/analytics/feedback",
        responses={
            200: {"description": "figures per card kind and per rule"},
            400: _json_error("start or end is not a date"),
            401: _json_error("no valid operator credential"),
            503: _json_error("the database is unavailable"),
        },
    )
    async def feedback_analytics(request: Request) -> JSONResponse:
        if not credential.allows(request):
            return JSONResponse(
                {"error": {"status": 401, "message": "operator credential required"}},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        query = request.query_params
        try:
            today = datetime.now(UTC).date()
            end = date.fromisoformat(query["end"]) if "end" in query else today
            start = (
                date.fromisoformat(query["start"])
                if "start" in query
                else end - timedelta(days=ANALYTICS_DAYS - 1)
            )
        except ValueError:
            return JSONResponse(
                {"error": {"status": 400, "message": "start and end must be YYYY-MM-DD"}},
                status_code=400,
            )
        if start > end:
            return JSONResponse(
                {"error": {"status": 400, "message": "start is after end"}}, status_code=400
            )
        since = datetime(start.year, start.month, start.day, tzinfo=UTC)
        until = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
        try:
            figures: dict[str, Any] = await store.feedback.analytics(since, until)
        except SQLAlchemyError:
            return JSONResponse(
                {"error": {"status": 503, "message": "the database is unavailable"}},
                status_code=503,
            )
        return JSONResponse(figures)

    return api


def _json_error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref("Error")}}}


def _unavailable_fhir() -> Response:
    log.error("audit trail read failed: database unavailable")
    return error_response(OperationError(503, "transient", "the database is unavailable"))


#: The CapabilityStatement entry of the audit trail on the /fhir base.
GUIDANCE_RESPONSE_CAPABILITY: dict[str, Any] = {
    "type": "GuidanceResponse",
    "profile": "http://hl7.org/fhir/StructureDefinition/cdshooksguidanceresponse",
    "documentation": (
        "The audit trail: one GuidanceResponse per CDS Hooks answer and per $apply plan. "
        "Operator credential only (Authorization: Bearer CDS_OPERATOR_TOKEN)."
    ),
    "interaction": [{"code": "read"}, {"code": "search-type"}],
    "searchParam": [
        {"name": "subject", "type": "reference"},
        {"name": "patient", "type": "reference"},
        {"name": "request", "type": "token", "documentation": "requestIdentifier (hookInstance)"},
        {"name": "date", "type": "date", "documentation": "occurrenceDateTime (eq ge gt le lt)"},
        {"name": "_count", "type": "number"},
        {"name": "_offset", "type": "number"},
    ],
}
