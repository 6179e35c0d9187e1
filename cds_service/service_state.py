"""What the routes of one app share, built once at start-up: settings, engine, cards, clients,
the state database; and the audit record of each answer."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import Request

from cds_service.api_errors import ApiError
from cds_service.auth import (
    AuthenticationError,
    JwksCache,
    JwtVerifier,
    load_clients,
)
from cds_service.auth.errors import ClientsFileError
from cds_service.clinical.regimen import Plan
from cds_service.engine import Engine
from cds_service.fetch import Allowlist, FhirFetcher
from cds_service.fetch.budget import MemoryBudget
from cds_service.fetch.client import QueryObserver
from cds_service.fhir.guidance_response import (
    Answer,
    card_parameters,
    care_plan_parameters,
    guidance_response,
    unavailable_parameters,
)
from cds_service.hooks.cards import CardBuilder
from cds_service.hooks.limits import Caps
from cds_service.hooks.prefetch_templates import resource_type_of
from cds_service.ids import time_ordered_uuid
from cds_service.middleware.call_record import call_record
from cds_service.plan_operation.apply import ApplyRequest
from cds_service.plan_operation.artifacts import profile_of
from cds_service.settings import Settings, SettingsError
from cds_service.store import AuditRecord, Store

logger = logging.getLogger("cds_service.app")

AUTH_OFF_WARNING = (
    "CDS_AUTH=off: CDS client authentication is DISABLED; any caller can use this service. "
    "Never run like this with real patient data."
)
#: Base URLs remembered (distinct scheme, server, root path and Host header seen).
_BASE_URLS = 64
#: The auth-off warning is repeated on calls at most this often: a reminder, not a flood.
AUTH_OFF_REPEAT_S = 60.0


class ServiceState:
    """Everything the routes share, built once per app."""

    def __init__(self, settings: Settings, store: Store, verifier: JwtVerifier | None) -> None:
        self.settings = settings
        self.store = store
        self.verifier = verifier
        self.engine = Engine.build()
        try:
            self.engine.protocol.profile(settings.profile)  # an unknown profile fails at start-up
        except LookupError as exc:
            raise SettingsError(f"CDS_PROFILE: {exc}") from None
        self.cards = CardBuilder(self.engine.protocol)
        self._base_urls: dict[tuple[Any, ...], str] = {}
        self.caps = Caps(
            draft_orders=settings.max_draft_orders,
            entries_per_key=settings.max_entries_per_key,
            resources=settings.max_resources,
        )

    def url(self, request: Request, path: str) -> str:
        return (self.settings.public_base_url or self._base_url(request)) + path

    def _base_url(self, request: Request) -> str:
        """The URL the request reached the service at, remembered per scheme, server, root
        path and Host header (Starlette builds it afresh on each call)."""
        scope = request.scope
        key = (
            scope.get("scheme"),
            # A list under some ASGI servers (Starlette's TestClient), a tuple under uvicorn.
            tuple(scope.get("server") or ()),
            scope.get("app_root_path"),
            scope.get("root_path"),
            request.headers.get("host"),
        )
        known = self._base_urls.get(key)
        if known is None:
            known = str(request.base_url).rstrip("/")
            if len(self._base_urls) < _BASE_URLS:  # Host headers are the client's to choose
                self._base_urls[key] = known
        return known

    async def audit(self, answer: Answer, plan: Plan, cards: list[dict[str, Any]]) -> None:
        """Queue the GuidanceResponse of a CDS Hooks answer (written behind; cds_service.store)."""
        await self._record(answer, plan, card_parameters(cards), cards)

    async def audit_unavailable(
        self, answer: Answer, reasons: Mapping[str, str], *, profile: str | None = None
    ) -> None:
        """Queue the GuidanceResponse of an answer the service could not give (412): status
        `data-required`, the keys it could not get with the reasons, the resource types.
        `profile`: the one asked for (a $apply's PlanDefinition), else the service's."""
        protocol = self.engine.protocol
        resource = guidance_response(
            answer,
            None,
            protocol,
            unavailable_parameters(protocol, profile or self.settings.profile, 412, reasons),
            "data-required",
            data_requirements=sorted({t for key in reasons if (t := resource_type_of(key))}),
        )
        await self.store.audit.record(AuditRecord.of(resource, answer.service, answer.occurred))

    async def _record(
        self,
        answer: Answer,
        plan: Plan,
        outputs: list[dict[str, Any]],
        cards: list[dict[str, Any]] | None = None,
    ) -> None:
        resource = guidance_response(answer, plan, self.engine.protocol, outputs, "success")
        await self.store.audit.record(
            AuditRecord.of(resource, answer.service, answer.occurred, cards or ())
        )

    async def audit_plan(
        self,
        request: Request,
        parsed: ApplyRequest,
        plan_definition: dict[str, Any],
        plan: Plan,
        care_plan: dict[str, Any],
    ) -> None:
        """The audit record of a $apply."""
        answer = self._plan_answer(request, parsed, plan_definition)
        await self._record(answer, plan, care_plan_parameters(plan_definition, care_plan))

    async def audit_plan_unavailable(
        self,
        request: Request,
        parsed: ApplyRequest,
        plan_definition: dict[str, Any],
        reasons: Mapping[str, str],
    ) -> None:
        """The audit record of a $apply answered 412, as a hook call's (`audit_unavailable`)."""
        await self.audit_unavailable(
            self._plan_answer(request, parsed, plan_definition),
            reasons,
            profile=profile_of(str(plan_definition["id"]), self.engine.protocol),
        )

    def _plan_answer(
        self, request: Request, parsed: ApplyRequest, plan_definition: dict[str, Any]
    ) -> Answer:
        """Who asked for a $apply: its request id (the caller's X-Request-ID if usable) stands
        for the hookInstance it does not have."""
        path = f"/fhir/PlanDefinition/{plan_definition['id']}/$apply"
        return Answer(
            response_id=time_ordered_uuid(),
            request_identifier=getattr(request.state, "request_id", None) or str(uuid.uuid4()),
            module_uri=self.url(request, path),
            occurred=datetime.now(UTC),
            patient_id=parsed.patient_id,
            encounter=parsed.encounter,
            user=parsed.practitioner,
            service=f"PlanDefinition/{plan_definition['id']}",
        )


def build_verifier(settings: Settings, store: Store) -> JwtVerifier | None:
    if not settings.auth:
        return None
    assert settings.clients_file is not None  # Settings.check
    try:
        clients = load_clients(settings.clients_file)
    except ClientsFileError as exc:
        raise SettingsError(f"CDS_CLIENTS_FILE: {exc}") from None
    return JwtVerifier(
        clients,
        JwksCache(
            timeout_s=settings.jwks_timeout_s,
            refetch_interval_s=settings.jwks_refetch_interval_s,
        ),
        store.replay,
        max_lifetime_s=settings.jwt_max_lifetime_s,
    )


def build_fetcher(settings: Settings, *, on_query: QueryObserver | None = None) -> FhirFetcher:
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
        on_query=on_query,
    )


class Authenticator:
    """Whether a request comes from a trusted CDS client (always, with CDS_AUTH=off).

    With authentication off it warns once when built and then at most once a minute on calls
    that would have been authenticated, so the log says so without repeating it on every call.
    """

    def __init__(
        self,
        settings: Settings,
        verifier: JwtVerifier | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._public_base_url = settings.public_base_url
        self._verifier = verifier
        self._clock = clock
        self._warned_at = clock()
        if verifier is None:
            logger.warning(AUTH_OFF_WARNING)

    async def verified(self, request: Request) -> bool:
        if self._verifier is None:
            now = self._clock()
            if now - self._warned_at >= AUTH_OFF_REPEAT_S:
                self._warned_at = now
                logger.warning(AUTH_OFF_WARNING)
            return True
        # The URL the client called (and signed), a trailing slash included.
        path = getattr(request.state, "called_path", None) or request.url.path
        audience = self._public_base_url + path
        try:
            # The verified client (its allowed fhir_servers) is kept for the fallback fetch.
            client = await self._verifier.verify(request.headers.get("authorization"), audience)
        except AuthenticationError as exc:
            # For the log and the metrics only: the caller learns nothing about which check.
            call_record(request).auth_refusal = exc.reason
            return False
        request.state.cds_client = client
        call_record(request).client_iss = client.iss
        return True

    async def authenticate(self, request: Request) -> None:
        """Raise the 401 answer unless the caller is a trusted client."""
        if not await self.verified(request):
            raise ApiError(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})
