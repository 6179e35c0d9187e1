"""The CDS Hooks 2.0 HTTP service (FastAPI).

`create_app(settings)` builds the app; `cds_service.app:app` is the app configured from the
environment, built on first access so that importing this module never needs the `CDS_*`
variables (tests build their own apps).

Every answer is JSON, errors included: `{"error": {"status": N, "message": "..."}}`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date
from functools import cache
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from cds_service import heap
from cds_service.auth import (
    AuthenticationError,
    InMemoryReplayCache,
    JwksCache,
    JwtVerifier,
    load_clients,
)
from cds_service.clinical.extract import InvalidResourceError
from cds_service.engine import Engine
from cds_service.fetch import Allowlist, FhirFetcher
from cds_service.fetch.budget import MemoryBudget, call_scope
from cds_service.hooks.cards import CardBuilder, HookContext
from cds_service.hooks.feedback import FeedbackStore
from cds_service.hooks.limits import Caps, TooLargeError, check_caps
from cds_service.hooks.models import (
    FeedbackRequest,
    HookRequest,
    RequestError,
    describe,
    parse_hook_request,
)
from cds_service.hooks.prefetch import (
    INVALID_FETCHED,
    Fetcher,
    MissingPrefetch,
    Offload,
    PrefetchError,
    ResolvedRecord,
    resolve,
)
from cds_service.hooks.services import SERVICES, Service
from cds_service.json_limits import MAX_DEPTH, too_deep
from cds_service.pages.router import PagesConfig, build_pages_router
from cds_service.plan_operation.router import build_router
from cds_service.record_source import FhirRecordSource
from cds_service.safe_log import where_raised
from cds_service.settings import Settings, SettingsError

logger = logging.getLogger("cds_service.app")
T = TypeVar("T")

AUTH_OFF_WARNING = (
    "CDS_AUTH=off: CDS client authentication is DISABLED; any caller can use this service. "
    "Never run like this with real patient data."
)


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


def _error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(error_body(status, message, **extra), status_code=status, headers=headers)


class FastJSONResponse(JSONResponse):
    """JSON rendered by orjson: several times faster than the standard library for cards."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


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
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise ApiError(413, f"request body exceeds {max_bytes} bytes")
        chunks.append(chunk)
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


#: Bodies larger than this are read and answered in a worker thread: parsing, reading every
#: entry and extracting facts from a request near the caps takes a few hundred milliseconds of
#: CPU, and on the event loop that would hold every other call (and /health) for as long.
OFFLOAD_BYTES = 256 * 1024


async def _in_thread(step: Callable[[], T]) -> T:
    return await asyncio.to_thread(step)


async def _inline(step: Callable[[], T]) -> T:
    return step()


class ServiceState:
    """Everything the routes share, built once per app."""

    def __init__(self, settings: Settings, verifier: JwtVerifier | None) -> None:
        self.settings = settings
        self.verifier = verifier
        self.engine = Engine.build()
        try:
            self.engine.protocol.profile(settings.profile)  # an unknown profile fails at start-up
        except LookupError as exc:
            raise SettingsError(f"CDS_PROFILE: {exc}") from None
        self.cards = CardBuilder(self.engine.protocol)
        self.caps = Caps(
            draft_orders=settings.max_draft_orders,
            entries_per_key=settings.max_entries_per_key,
            resources=settings.max_resources,
        )
        self.feedback = FeedbackStore()


def _build_verifier(settings: Settings) -> JwtVerifier | None:
    if not settings.auth:
        return None
    assert settings.clients_file is not None  # Settings.check
    return JwtVerifier(
        load_clients(settings.clients_file),
        JwksCache(timeout_s=settings.jwks_timeout_s),
        InMemoryReplayCache(),
    )


def _build_fetcher(settings: Settings) -> FhirFetcher:
    try:
        allowlist = Allowlist.from_env(settings.auth, settings.fhir_server_allowlist)
    except ValueError as exc:
        raise SettingsError(f"CDS_FHIR_SERVER_ALLOWLIST: {exc}") from None
    return FhirFetcher(
        allowlist,
        timeout=settings.fhir_timeout_s,
        deadline=settings.fhir_deadline_s,
        max_pages=settings.fhir_max_pages,
        max_entries=settings.max_entries_per_key,
        budget=MemoryBudget(
            per_call=settings.fhir_max_bytes_per_call, total=settings.fhir_max_bytes_total
        ),
    )


def create_app(
    settings: Settings | None = None,
    *,
    fetcher: Fetcher | None = None,
    clock: Callable[[], date] = date.today,
) -> FastAPI:
    """Build the service. `fetcher` fills missing prefetch keys; `clock` gives the start date."""
    settings = settings or Settings.from_env()
    settings.check()
    built = _build_fetcher(settings) if fetcher is None else None
    shared_fetcher: Fetcher = fetcher or built  # type: ignore[assignment]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        heap.settle()
        yield
        # The HTTP client belongs to the event loop that used it: close it with the app.
        if built is not None:
            await built.aclose()

    state = ServiceState(settings, _build_verifier(settings))
    if not settings.auth:
        logger.warning(AUTH_OFF_WARNING)

    app = FastAPI(
        title="B12 CDS",
        description="CDS Hooks 2.0 service for vitamin B12 deficiency",
        version=state.engine.protocol.version,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.cds = state
    app.state.fetcher = shared_fetcher
    app.state.plan_record_source = FhirRecordSource(
        shared_fetcher, settings.fhir_base_url, settings.fhir_access_token
    )
    app.state.clock = clock
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc.status, exc.message, exc.headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: "not found", 405: "method not allowed"}.get(exc.status_code)
        return _error_response(exc.status_code, message or str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(422, "invalid request")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Last resort: the tests show no input reaches it. No details leave the process.
        logger.error(
            "unexpected error on %s %s: %s", request.method, request.url.path, where_raised(exc)
        )
        return _error_response(500, "internal error")

    async def verified(request: Request) -> bool:
        """Whether the caller is a trusted CDS client (always, with CDS_AUTH=off)."""
        if state.verifier is None:
            logger.warning(AUTH_OFF_WARNING)
            return True
        audience = settings.public_base_url + request.url.path
        try:
            # The verified client (its allowed fhir_servers) is kept for the fallback fetch.
            request.state.cds_client = await state.verifier.verify(
                request.headers.get("authorization"), audience
            )
        except AuthenticationError:
            return False
        return True

    async def authenticate(request: Request) -> None:
        if not await verified(request):
            raise ApiError(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})

    # $apply reads patient data, so it is authenticated as the hooks are.
    app.include_router(
        build_router(
            state.engine,
            authenticate=verified,
            max_body_bytes=settings.max_body_bytes,
            max_resources=settings.max_resources,
        )
    )

    app.include_router(
        build_pages_router(
            PagesConfig(
                state.engine,
                state.cards,
                settings.profile,
                settings.preview,
                clock,
                settings.max_body_bytes,
            )
        )
    )

    def service_of(service_id: str) -> Service:
        service = SERVICES.get(service_id)
        if service is None:
            raise ApiError(404, "unknown CDS service")
        return service

    @app.get("/health")
    async def health() -> dict[str, Any]:
        p = state.engine.protocol
        return {"status": "ok", "protocol": {"id": p.id, "version": p.version}}

    @app.get("/cds-services")
    async def discovery(request: Request) -> dict[str, Any]:
        if settings.discovery_requires_auth:
            await authenticate(request)
        return {"services": [s.discovery() for s in SERVICES.values()]}

    @app.post("/cds-services/{service_id}")
    async def call_service(service_id: str, request: Request) -> JSONResponse:
        # What the fallback fetch buffers for this call is held against its memory budget
        # until the call is answered.
        with call_scope():
            return await _call_service(service_id, request)

    async def _call_service(service_id: str, request: Request) -> JSONResponse:
        await authenticate(request)
        service = service_of(service_id)
        raw = await read_body(request, settings.max_body_bytes)
        offload: Offload[Any] = _in_thread if len(raw) > OFFLOAD_BYTES else _inline

        def parse() -> HookRequest:
            try:
                hook_request = parse_hook_request(parse_json(raw), service.hook)
                check_caps(hook_request.prefetch, hook_request.context, state.caps)
            except RequestError as exc:
                raise ApiError(400, str(exc)) from None
            except TooLargeError as exc:
                raise ApiError(413, str(exc)) from None
            return hook_request

        hook_request = await offload(parse)
        try:
            client = getattr(request.state, "cds_client", None)
            record = await resolve(
                hook_request,
                request.app.state.fetcher,
                allow=client.fhir_servers if client is not None else (),
                offload=offload,
            )
        except PrefetchError as exc:
            raise ApiError(400, str(exc)) from None
        except MissingPrefetch as exc:
            raise ApiError(
                412,
                "required FHIR data is missing from the prefetch and could not be fetched: "
                + "; ".join(f"{key}: {exc.details[key]}" for key in sorted(exc.details)),
                extra={
                    "missing": sorted(exc.details),
                    "reasons": dict(sorted(exc.details.items())),
                },
            ) from None
        today = request.app.state.clock()
        try:
            # A few milliseconds of pure CPU for a usual request: a worker thread would only add
            # hand-off and GIL contention, so only large requests are offloaded.
            cards = await offload(lambda: _answer(state, service, hook_request, record, today))
        except InvalidResourceError as exc:
            key = record.fetched_references.get(exc.reference)
            if key is not None:
                reason = f"{INVALID_FETCHED}: {exc}"
                raise ApiError(
                    412,
                    f"FHIR data fetched from the FHIR server is not valid FHIR R4: {key}: {reason}",
                    extra={"missing": [key], "reasons": {key: reason}},
                ) from None
            raise ApiError(400, str(exc)) from None
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            # Input the clinical core could not read although it passed the checks above: a
            # gap in those checks, logged so it gets closed; the caller gets a 400.
            logger.error("unreadable resource reached the engine: %s", where_raised(exc))
            raise ApiError(400, "a resource in the request could not be read") from None
        state.feedback.issue(service.id, cards)
        return FastJSONResponse({"cards": cards})

    @app.post("/cds-services/{service_id}/feedback")
    async def feedback(service_id: str, request: Request) -> dict[str, Any]:
        await authenticate(request)
        service = service_of(service_id)
        body = await read_json(request, settings.max_body_bytes)
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        try:
            parsed = FeedbackRequest.model_validate(body)
        except ValidationError as exc:
            raise ApiError(400, describe(exc)) from None
        state.feedback.record(service.id, parsed)
        return {}

    return app


def _answer(
    state: ServiceState,
    service: Service,
    request: HookRequest,
    record: ResolvedRecord,
    today: date,
) -> list[dict[str, Any]]:
    """The cards for one call."""
    ctx = request.context
    plan = state.engine.plan(
        record.resources,
        start=today,
        profile=state.settings.profile,
        patient_id=record.patient_id,
        draft_orders=record.draft_orders,
    )
    user = ctx.get("userId")
    encounter = ctx.get("encounterId")
    series = state.engine.medication_requests(
        plan, requester=user, encounter=encounter, authored_on=today
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
    )
    return state.cards.cards(plan, series, hook_ctx, new_id=lambda: str(uuid.uuid4()))


@cache
def _default_app() -> FastAPI:
    logging.basicConfig(level=logging.INFO)
    return create_app(Settings.from_env())


def __getattr__(name: str) -> Any:
    # `uvicorn cds_service.app:app` looks the attribute up; build the configured app then.
    if name == "app":
        return _default_app()
    raise AttributeError(name)
