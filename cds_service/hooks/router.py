"""The CDS Hooks 2.0 endpoints: discovery, the services and their feedback.

Mount with `app.include_router(build_router(state, auth))`. The app may set
`app.state.fetcher` (fills prefetch keys the EHR did not send) and `app.state.clock`
(`() -> date`, the start date of a plan). Errors are raised as `ApiError` and answered by the
app's handlers (cds_service.api_errors).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from cds_service.api_errors import ApiError, FastJSONResponse
from cds_service.clinical.extract import InvalidResourceError
from cds_service.clinical.regimen import Plan
from cds_service.fetch.budget import call_scope
from cds_service.fhir.guidance_response import Answer
from cds_service.hooks.cards import HookContext
from cds_service.hooks.feedback import log_feedback
from cds_service.hooks.fetched_pages import FetchedPages
from cds_service.hooks.large_bodies import slim_request
from cds_service.hooks.limits import TooLargeError, check_caps
from cds_service.hooks.models import (
    FeedbackRequest,
    HookRequest,
    RequestError,
    describe,
    parse_hook_request,
)
from cds_service.hooks.prefetch import (
    INVALID_FETCHED,
    MissingPrefetch,
    PrefetchError,
    ResolvedRecord,
    resolve,
)
from cds_service.hooks.raised_once import raised_once
from cds_service.hooks.services import SERVICES, Service
from cds_service.ids import time_ordered_uuid
from cds_service.lean_route import LeanRoute
from cds_service.middleware.call_record import call_record
from cds_service.offload.pool import OFFLOAD_BYTES, process_pool
from cds_service.openapi import error_responses, json_body, request_body
from cds_service.request_body import parse_json, read_body, read_json
from cds_service.safe_log import where_raised
from cds_service.service_state import Authenticator, ServiceState

logger = logging.getLogger("cds_service.app")


def service_of(service_id: str) -> Service:
    service = SERVICES.get(service_id)
    if service is None:
        raise ApiError(404, "unknown CDS service")
    return service


def build_router(state: ServiceState, auth: Authenticator) -> APIRouter:
    """The CDS Hooks routes answering with `state`'s engine and cards."""
    settings = state.settings
    reader = process_pool(settings.read_processes)
    api = APIRouter(tags=["CDS Hooks"])

    @api.get(
        "/cds-services",
        summary="CDS Hooks discovery",
        responses={200: json_body("Discovery", "the services"), **error_responses(401)},
    )
    async def discovery(request: Request) -> dict[str, Any]:
        if settings.discovery_requires_auth:
            await auth.authenticate(request)
        return {"services": [s.discovery() for s in SERVICES.values()]}

    async def call_service(service_id: str, request: Request) -> JSONResponse:
        # What the fallback fetch buffers for this call is held against its memory budget
        # until the call is answered.
        with call_scope():
            return await _call_service(service_id, request)

    api.add_api_route(
        "/cds-services/{service_id}",
        call_service,
        methods=["POST"],
        summary="Call a CDS service",
        openapi_extra=request_body("HookRequest"),
        responses={
            200: json_body("CdsServiceResponse", "the cards"),
            **error_responses(400, 401, 404, 412, 413),
        },
        route_class_override=LeanRoute,
    )

    async def _call_service(service_id: str, request: Request) -> JSONResponse:
        noted = call_record(request)
        noted.service = service_id if service_id in SERVICES else None
        await auth.authenticate(request)
        service = service_of(service_id)
        raw = await read_body(request, settings.max_body_bytes)
        today = request.app.state.clock()
        if len(raw) > OFFLOAD_BYTES:
            # Parsed and checked in another process, which sends back only the entries the
            # rules can read: what follows is the work of a usual request.
            raw = await slim_request(reader, raw, service.hook, state.caps, today)
        try:
            hook_request = parse_hook_request(parse_json(raw), service.hook)
            check_caps(hook_request.prefetch, hook_request.context, state.caps)
        except RequestError as exc:
            raise ApiError(400, str(exc)) from None
        except TooLargeError as exc:
            raise ApiError(413, str(exc)) from None
        noted.hook_instance = hook_request.hookInstance
        ctx = hook_request.context

        def audited(patient_id: str | None) -> Answer:
            return Answer(
                response_id=time_ordered_uuid(),
                request_identifier=hook_request.hookInstance,
                module_uri=state.url(request, f"/cds-services/{service.id}"),
                occurred=datetime.now(UTC),
                patient_id=patient_id,
                encounter=ctx.get("encounterId"),
                user=ctx.get("userId"),
                service=service.id,
            )

        async def unavailable(message: str, reasons: dict[str, str]) -> ApiError:
            """The 412 naming the keys, audited as an answer that could not be given."""
            noted.unavailable = dict(reasons)
            patient_id = ctx.get("patientId")
            await state.audit_unavailable(
                audited(patient_id if isinstance(patient_id, str) else None), reasons
            )
            return ApiError(
                412,
                message,
                extra={"missing": sorted(reasons), "reasons": dict(sorted(reasons.items()))},
            )

        try:
            client = getattr(request.state, "cds_client", None)
            record = await resolve(
                hook_request,
                request.app.state.fetcher,
                allow=client.fhir_servers if client is not None else (),
                pages=lambda patient_id, scope: FetchedPages(reader, patient_id, scope, today),
            )
        except PrefetchError as exc:
            raise ApiError(400, str(exc)) from None
        except MissingPrefetch as exc:
            raise await unavailable(
                "required FHIR data is missing from the prefetch and could not be fetched: "
                + "; ".join(f"{key}: {exc.details[key]}" for key in sorted(exc.details)),
                exc.details,
            ) from None
        # Cards link to the service's pages: its public URL, else the one it was called at.
        # Outside the try below: a fault here is the service's, never a 400 for the caller.
        base_url = state.url(request, "")
        try:
            plan, cards = answer(state, service, hook_request, record, today, base_url)
        except InvalidResourceError as exc:
            key = record.fetched_references.get(exc.reference)
            if key is not None:
                reason = f"{INVALID_FETCHED}: {exc}"
                raise await unavailable(
                    f"FHIR data fetched from the FHIR server is not valid FHIR R4: {key}: {reason}",
                    {key: reason},
                ) from None
            raise ApiError(400, str(exc)) from None
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            # Input the clinical core could not read although it passed the checks above: a
            # gap in those checks, logged so it gets closed; the caller gets a 400.
            logger.error("unreadable resource reached the engine: %s", where_raised(exc))
            raise ApiError(400, "a resource in the request could not be read") from None
        cards = await raised_once(
            state.store.raised, service.hook, hook_request.hookInstance, cards
        )
        await state.audit(audited(record.patient_id), plan, cards)
        noted.cards = [_kind_and_rules(card) for card in cards]
        return FastJSONResponse({"cards": cards})

    @api.post(
        "/cds-services/{service_id}/feedback",
        summary="Feedback on cards (accepted / overridden)",
        openapi_extra=request_body("FeedbackRequest"),
        responses={
            200: {
                "description": "recorded",
                "content": {"application/json": {"schema": {"type": "object", "maxProperties": 0}}},
            },
            **error_responses(400, 401, 404, 413),
        },
    )
    async def feedback(service_id: str, request: Request) -> dict[str, Any]:
        noted = call_record(request)
        noted.service = service_id if service_id in SERVICES else None
        await auth.authenticate(request)
        service = service_of(service_id)
        body = await read_json(request, settings.max_body_bytes)
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        try:
            parsed = FeedbackRequest.model_validate(body)
        except ValidationError as exc:
            raise ApiError(400, describe(exc)) from None
        try:
            # Committed before the 200: acknowledged feedback is never lost.
            records = await state.store.feedback.record(service.id, parsed)
        except (SQLAlchemyError, OSError) as exc:
            logger.error("feedback not stored: %s", where_raised(exc))
            raise ApiError(503, "the feedback could not be stored; send it again") from None
        log_feedback(records)
        noted.feedback = [item.outcome for item in parsed.feedback]
        return {}

    return api


def _kind_and_rules(card: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    extension = card.get("extension") or {}
    return str(extension.get("card", "-")), tuple(extension.get("rules", ()))


def answer(
    state: ServiceState,
    service: Service,
    request: HookRequest,
    record: ResolvedRecord,
    today: date,
    base_url: str = "",
    *,
    templated: bool = True,
    new_id: Callable[[], str] = time_ordered_uuid,
) -> tuple[Plan, list[dict[str, Any]]]:
    """The plan (for the audit trail) and the cards for one call; `base_url` is where the
    cards' links to the pages point. The answer is only serialised by orjson and audited, so
    its MedicationRequests hold their fixed parts as JSON text made at start-up (`templated`;
    the same bytes as plain dicts: tests/test_output_templates.py)."""
    ctx = request.context
    plan = state.engine.plan(
        record.resources,
        start=today,
        profile=state.settings.profile,
        patient_id=record.patient_id,
        draft_orders=record.draft_orders,
        base_url=record.scope.base_url,
        full_urls=record.scope.full_urls,
    )
    user = ctx.get("userId")
    encounter = ctx.get("encounterId")
    series = state.engine.medication_requests(
        plan, requester=user, encounter=encounter, authored_on=today, templated=templated
    )
    selections = ctx.get("selections")
    hook_ctx = HookContext(
        hook=service.hook,
        patient_id=record.patient_id,
        user_id=user,
        encounter_id=encounter,
        draft_orders=record.draft_orders,
        selections=tuple(selections) if isinstance(selections, list) else None,
        not_checked=tuple(sorted(record.missing)),
        authored_on=today,
        base_url=base_url,
    )
    return plan, state.cards.cards(plan, series, hook_ctx, new_id=new_id)
