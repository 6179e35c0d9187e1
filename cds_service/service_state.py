"""What the routes of one app share, built once at start-up: settings, engine, cards, clients."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fastapi import Request

from cds_service.api_errors import ApiError
from cds_service.auth import (
    AuthenticationError,
    InMemoryReplayCache,
    JwksCache,
    JwtVerifier,
    load_clients,
)
from cds_service.auth.errors import ClientsFileError
from cds_service.engine import Engine
from cds_service.fetch import Allowlist, FhirFetcher
from cds_service.fetch.budget import MemoryBudget
from cds_service.fetch.client import QueryObserver
from cds_service.hooks.cards import CardBuilder
from cds_service.hooks.feedback import FeedbackStore
from cds_service.hooks.limits import Caps
from cds_service.middleware.call_record import call_record
from cds_service.settings import Settings, SettingsError

logger = logging.getLogger("cds_service.app")

AUTH_OFF_WARNING = (
    "CDS_AUTH=off: CDS client authentication is DISABLED; any caller can use this service. "
    "Never run like this with real patient data."
)
#: The auth-off warning is repeated on calls at most this often: a reminder, not a flood.
AUTH_OFF_REPEAT_S = 60.0


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


def build_verifier(settings: Settings) -> JwtVerifier | None:
    if not settings.auth:
        return None
    assert settings.clients_file is not None  # Settings.check
    try:
        clients = load_clients(settings.clients_file)
    except ClientsFileError as exc:
        raise SettingsError(f"CDS_CLIENTS_FILE: {exc}") from None
    return JwtVerifier(
        clients,
        JwksCache(timeout_s=settings.jwks_timeout_s),
        InMemoryReplayCache(),
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
