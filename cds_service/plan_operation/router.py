"""The FHIR Clinical Reasoning endpoints: metadata, knowledge artifacts and PlanDefinition/$apply.

Mount with `app.include_router(build_router(engine, authenticate=..., max_body_bytes=...))`
(prefix `/fhir`). `authenticate(request)` says whether the caller may run $apply, which reads
patient data (the artifacts are public, as CDS Hooks discovery is). The app may set:
- `app.state.plan_record_source`: `async (patient_id, start) -> list[resource dict] | Bundle
  dict`, used by $apply when no `data` Bundle is given (`start`: the plan's start date, which
  decides what of a long record the rules read); it may raise RecordUnavailableError.
  Without it, $apply without `data` answers 412.
- `app.state.clock`: `() -> date | datetime`, the plan's start date (default: today).

Every answer, errors included, is FHIR JSON (`application/fhir+json`); errors are
OperationOutcomes returned here, so the app's own error handlers are never needed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime
from functools import cached_property
from typing import Any

from fastapi import APIRouter, Request, Response

from cds_service import __version__ as service_version
from cds_service.clinical.extract import InvalidResourceError
from cds_service.clinical.regimen import Plan
from cds_service.engine import Engine, bundle_resources
from cds_service.fhir.bundle import searchset
from cds_service.middleware.call_record import call_record
from cds_service.offload.pool import ReaderPool, process_pool
from cds_service.openapi import fhir_body, request_body
from cds_service.plan_operation.apply import (
    ApplyRequest,
    DataError,
    ParameterError,
    apply,
    data_resources,
    parse_query,
)
from cds_service.plan_operation.artifacts import (
    activity_definitions,
    plan_definitions,
    profile_of,
)
from cds_service.plan_operation.body import OperationError, read_parameters
from cds_service.safe_log import where_raised

FHIR_JSON = "application/fhir+json"
APPLY_OPERATION = "http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply"
JSON = dict[str, Any]
RecordSource = Callable[[str, date], Awaitable[Any]]
#: Called with every plan answered, before the answer leaves (the audit trail).
PlanRecorder = Callable[[Request, ApplyRequest, JSON, Plan, JSON], Awaitable[None]]
#: Called with every $apply answered 412 (the record could not be got): key -> reason.
UnavailableRecorder = Callable[[Request, ApplyRequest, JSON, Mapping[str, str]], Awaitable[None]]
#: Interactions beyond the artifacts, served by other routers on the same /fhir base.
ExtraResources = list[JSON]

#: Whether a request comes from a trusted client; failures are not explained to the caller.
Authenticate = Callable[[Request], Awaitable[bool]]
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_RESOURCES = 20_000

log = logging.getLogger(__name__)

#: What $apply answers, for the OpenAPI description; every error is an OperationOutcome.
APPLY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: fhir_body("the CarePlan and its RequestGroup / MedicationRequests (a Bundle)"),
    400: fhir_body("invalid parameters"),
    401: fhir_body("no valid CDS client JWT"),
    404: fhir_body("unknown PlanDefinition"),
    412: fhir_body("the patient's record is unavailable"),
    413: fhir_body("request too large"),
    422: fhir_body("the data given is not usable FHIR R4"),
}
APPLY_SUBJECT = {
    "name": "subject",
    "in": "query",
    "required": True,
    "schema": {"type": "string"},
    "description": "Patient/{id}",
}


class RecordUnavailableError(RuntimeError):
    """Raised by a record source when the patient's record cannot be read (HTTP 412);
    `details`: the prefetch keys it could not get, each with the reason, when it knows them."""

    def __init__(self, message: str, details: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.details = dict(details or {})


def fhir_response(resource: Mapping[str, Any], status: int = 200) -> Response:
    body = json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(content=body, status_code=status, media_type=FHIR_JSON)


def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> JSON:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def error_response(error: OperationError) -> Response:
    response = fhir_response(operation_outcome(error.code, error.diagnostics), error.status)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def read_response(kind: str, resource_id: str, resource: Mapping[str, Any] | None) -> Response:
    """The answer of a FHIR read: the resource, or 404 naming what is not known."""
    if resource is None:
        return error_response(
            OperationError(404, "not-found", f"{kind}/{resource_id} is not known")
        )
    return fhir_response(resource)


class Knowledge:
    """The engine and the artifacts generated from its protocol, built on first use."""

    def __init__(self, engine: Engine | None = None) -> None:
        self._engine = engine

    @cached_property
    def engine(self) -> Engine:
        return self._engine or Engine.build()

    @cached_property
    def plan_definitions(self) -> dict[str, JSON]:
        return plan_definitions(self.engine.protocol)

    @cached_property
    def activity_definitions(self) -> dict[str, JSON]:
        return activity_definitions(self.engine.protocol)

    def capability_statement(self, today: date, extra: ExtraResources | None = None) -> JSON:
        """What the /fhir base serves; `extra` lists the resources other routers add there."""
        protocol = self.engine.protocol
        return {
            "resourceType": "CapabilityStatement",
            "id": "b12-cds-plan-operation",
            "status": "active",
            "date": today.isoformat(),
            "publisher": protocol.publisher or "B12 CDS",
            "kind": "instance",
            "software": {"name": "cds_service", "version": service_version},
            "implementation": {
                "description": (
                    f"{protocol.title} {protocol.version}: PlanDefinition/$apply "
                    "(FHIR Clinical Reasoning)"
                )
            },
            "fhirVersion": "4.0.1",
            "format": ["json", FHIR_JSON],
            "rest": [
                {
                    "mode": "server",
                    "resource": [
                        {
                            "type": "PlanDefinition",
                            "interaction": [{"code": "read"}, {"code": "search-type"}],
                            "searchParam": ARTIFACT_SEARCH_PARAMS,
                            "operation": [{"name": "apply", "definition": APPLY_OPERATION}],
                        },
                        {
                            "type": "ActivityDefinition",
                            "interaction": [{"code": "read"}, {"code": "search-type"}],
                            "searchParam": ARTIFACT_SEARCH_PARAMS,
                        },
                        *(extra or []),
                    ],
                }
            ],
        }


ARTIFACT_SEARCH_PARAMS: list[JSON] = [
    {"name": "_id", "type": "token"},
    {"name": "url", "type": "uri"},
    {"name": "name", "type": "string"},
    {"name": "status", "type": "token"},
]


def search_artifacts(request: Request, kind: str, table: Mapping[str, JSON], base: str) -> Response:
    """A searchset of the artifacts matching `_id`, `url`, `name` (prefix) and `status`."""
    query = request.query_params
    unknown = sorted(set(query.keys()) - {p["name"] for p in ARTIFACT_SEARCH_PARAMS})
    if unknown:
        return error_response(
            OperationError(
                400, "not-supported", f"unsupported search parameter(s): {', '.join(unknown)}"
            )
        )
    found = []
    for resource in table.values():
        if "_id" in query and resource["id"] not in query["_id"].split(","):
            continue
        if "url" in query and resource.get("url") != query["url"]:
            continue
        if "name" in query and not str(resource.get("name", "")).lower().startswith(
            query["name"].lower()
        ):
            continue
        if "status" in query and resource.get("status") != query["status"]:
            continue
        found.append(resource)
    self_url = f"{base}/{kind}" + (f"?{request.url.query}" if request.url.query else "")
    return fhir_response(searchset(base, found, self_url=self_url))


def _base(request: Request) -> str:
    configured = getattr(request.app.state, "public_base_url", "")
    return (configured or str(request.base_url).rstrip("/")) + "/fhir"


def _today(request: Request) -> date:
    clock = getattr(request.app.state, "clock", None)
    if clock is None:
        return date.today()
    now = clock()
    return now.date() if isinstance(now, datetime) else now


async def _record(request: Request, patient_id: str, start: date) -> list[Mapping[str, Any]]:
    source: RecordSource | None = getattr(request.app.state, "plan_record_source", None)
    if source is None:
        raise OperationError(
            412, "not-supported", "no record source configured: give the record as 'data'"
        )
    try:
        record = await source(patient_id, start)
    except RecordUnavailableError as exc:
        # Its message is built by the service (setting names, prefetch keys, fixed reasons).
        log.warning("record source failed: %s", exc)
        raise OperationError(
            412, "not-found", f"the patient's record is unavailable: {exc}", exc.details
        ) from None
    except (LookupError, OSError, TimeoutError) as exc:
        log.warning("record source failed: %s", type(exc).__name__)
        raise OperationError(412, "transient", "the patient's record is unavailable") from None
    if isinstance(record, Mapping) and record.get("resourceType") == "Bundle":
        return bundle_resources(record)
    if isinstance(record, list):
        return [r for r in record if isinstance(r, Mapping)]
    raise OperationError(412, "exception", "the record source gave no usable record")


Endpoint = Callable[..., Awaitable[Response]]
Responses = dict[int | str, dict[str, Any]]


def build_router(
    engine: Engine | None = None,
    *,
    authenticate: Authenticate | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_resources: int = DEFAULT_MAX_RESOURCES,
    record: PlanRecorder | None = None,
    record_unavailable: UnavailableRecorder | None = None,
    extra_resources: ExtraResources | None = None,
    reader: ReaderPool | None = None,
) -> APIRouter:
    """A router serving the artifacts of `engine`'s protocol (default: the packaged one).

    Without `authenticate` anyone may run $apply: for tests and for apps that authenticate
    in front of the router. `reader` reads bodies over 256 KiB (default: the process's one
    reading process)."""
    knowledge = Knowledge(engine)
    pool = reader or process_pool(1)
    api = APIRouter(prefix="/fhir", tags=["FHIR Clinical Reasoning"])

    @api.get(
        "/metadata", response_class=Response, responses={200: fhir_body("CapabilityStatement")}
    )
    async def metadata(request: Request) -> Response:
        return fhir_response(knowledge.capability_statement(_today(request), extra_resources or []))

    def serve_artifacts(kind: str, table: Mapping[str, JSON], snake: str) -> None:
        """The search and the read of one kind of artifact (`snake`: its name in route names)."""

        async def search(request: Request) -> Response:
            return search_artifacts(request, kind, table, _base(request))

        async def read(resource_id: str) -> Response:
            return read_response(kind, resource_id, table.get(resource_id))

        def get(path: str, endpoint: Endpoint, name: str, responses: Responses) -> None:
            api.add_api_route(
                path,
                endpoint,
                methods=["GET"],
                name=name,
                response_class=Response,
                responses=responses,
            )

        searched: Responses = {
            200: fhir_body("a searchset Bundle"),
            400: fhir_body("unsupported parameter"),
        }
        get(f"/{kind}", search, f"search_{snake}s", searched)
        found: Responses = {200: fhir_body(f"the {kind}"), 404: fhir_body("unknown id")}
        get(f"/{kind}/{{resource_id}}", read, f"read_{snake}", found)

    serve_artifacts("PlanDefinition", knowledge.plan_definitions, "plan_definition")
    serve_artifacts("ActivityDefinition", knowledge.activity_definitions, "activity_definition")

    async def run(request: Request, resource_id: str, read: Callable[[], Any]) -> Response:
        #: What a 412 is audited with, once the request is read.
        asked: tuple[ApplyRequest, JSON] | None = None
        try:
            if authenticate is not None and not await authenticate(request):
                raise OperationError(401, "login", "authentication required")
            plan_definition = knowledge.plan_definitions.get(resource_id)
            profile = profile_of(resource_id, knowledge.engine.protocol)
            if plan_definition is None or profile is None:
                raise OperationError(404, "not-found", f"PlanDefinition/{resource_id} is not known")
            try:
                parsed: ApplyRequest = await read()
                asked = (parsed, plan_definition)
                if parsed.data is not None:
                    resources = data_resources(parsed.data, parsed.patient_id)
                else:
                    resources = await _record(
                        request, parsed.patient_id, parsed.period_start or _today(request)
                    )
                plan, answer = apply(
                    knowledge.engine,
                    plan_definition,
                    profile,
                    parsed,
                    resources,
                    _today(request),
                )
            except ParameterError as exc:
                raise OperationError(400, "invalid", str(exc)) from None
            except InvalidResourceError as exc:
                if parsed.data is None:  # read from the FHIR server: its data, not the caller's
                    log.warning("record source gave invalid FHIR: %s", exc.reference)
                    raise OperationError(
                        412, "processing", "the patient's record is not valid FHIR R4"
                    ) from None
                raise OperationError(422, "processing", str(exc)) from None
            except DataError as exc:
                raise OperationError(422, "processing", str(exc)) from None
            if record is not None:
                await record(request, parsed, plan_definition, plan, answer)
            return fhir_response(answer)
        except OperationError as exc:
            call_record(request).reason = exc.diagnostics
            if exc.status == 412 and record_unavailable is not None and asked is not None:
                # Every answer is audited: one the record could not be got for too.
                await record_unavailable(request, *asked, exc.unavailable)
            return error_response(exc)
        except Exception as exc:
            log.error("PlanDefinition/$apply failed: %s", where_raised(exc))
            call_record(request).reason = "internal error"
            return error_response(OperationError(500, "exception", "internal error"))

    @api.post(
        "/PlanDefinition/{resource_id}/$apply",
        response_class=Response,
        openapi_extra=request_body("FhirResource", FHIR_JSON),
        responses=APPLY_RESPONSES,
    )
    async def apply_post(request: Request, resource_id: str) -> Response:
        async def read() -> ApplyRequest:
            return await read_parameters(
                request, max_body_bytes, max_resources, _today(request), pool
            )

        return await run(request, resource_id, read)

    @api.get(
        "/PlanDefinition/{resource_id}/$apply",
        response_class=Response,
        openapi_extra={"parameters": [APPLY_SUBJECT]},
        responses=APPLY_RESPONSES,
    )
    async def apply_get(request: Request, resource_id: str) -> Response:
        async def read() -> ApplyRequest:
            return parse_query(request.query_params)

        return await run(request, resource_id, read)

    return api
