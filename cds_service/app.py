"""The CDS Hooks 2.0 HTTP service (FastAPI): this module only composes it.

`create_app(settings)` builds the app from its parts: the shared state
(cds_service.service_state), the routers (CDS Hooks in cds_service.hooks.router, the FHIR
operation in cds_service.plan_operation.router, the pages in cds_service.pages.router, health
in cds_service.health), the error handlers (cds_service.api_errors) and the middleware
(cds_service.middleware). `cds_service.app:app` is the app configured from the environment,
built on first access so that importing this module never needs the `CDS_*` variables (tests
build their own apps).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date
from functools import cache
from typing import Any

from cds_service import startup

# The protocol tables are read when the modules below are imported: a bad table is reported
# as one line, as a bad setting is.
with startup.exit_on_operator_error():
    from fastapi import FastAPI
    from fastapi.middleware.cors import CORSMiddleware

    from cds_service import api_docs, health, heap, logs, metrics, openapi
    from cds_service.api_errors import install_error_handlers
    from cds_service.fetch import FhirFetcher
    from cds_service.hooks import router as hooks
    from cds_service.hooks.prefetch import Fetcher
    from cds_service.middleware.access_log import log_call
    from cds_service.middleware.last_resort import LastResortMiddleware
    from cds_service.middleware.metrics import metrics_observer
    from cds_service.middleware.observe import ObserveMiddleware
    from cds_service.middleware.request_id import RequestIdMiddleware
    from cds_service.middleware.security_headers import SecurityHeadersMiddleware
    from cds_service.middleware.trailing_slash import TrailingSlashMiddleware
    from cds_service.offload.pool import process_pool
    from cds_service.operator_api import (
        GUIDANCE_RESPONSE_CAPABILITY,
        OperatorCredential,
        build_operator_router,
    )
    from cds_service.pages.router import PagesConfig, build_pages_router
    from cds_service.plan_operation import router as plan_operation
    from cds_service.record_source import FhirRecordSource
    from cds_service.safe_log import drop_tracebacks
    from cds_service.service_state import (
        AUTH_OFF_WARNING,
        Authenticator,
        ServiceState,
        build_fetcher,
        build_verifier,
    )
    from cds_service.settings import Settings
    from cds_service.store import Store

__all__ = ["AUTH_OFF_WARNING", "create_app"]


def create_app(
    settings: Settings | None = None,
    *,
    fetcher: Fetcher | None = None,
    clock: Callable[[], date] = date.today,
) -> FastAPI:
    """Build the service. `fetcher` fills missing prefetch keys; `clock` gives the start date."""
    drop_tracebacks()
    settings = settings or Settings.from_env()
    settings.check()
    counters = metrics.Metrics()
    built = build_fetcher(settings, on_query=counters.observe_fetch) if fetcher is None else None
    shared_fetcher: Fetcher = fetcher or built  # type: ignore[assignment]
    if isinstance(shared_fetcher, FhirFetcher) and shared_fetcher.on_query is None:
        shared_fetcher.on_query = counters.observe_fetch

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        heap.settle()
        yield
        # The HTTP client belongs to the event loop that used it: close it with the app.
        if built is not None:
            await built.aclose()
        # Graceful shutdown: every queued audit record is written before the process ends.
        await state.store.close()
        process_pool(settings.read_processes).close()

    store = Store(settings)
    store.audit.queue.on_depth = counters.observe_audit_queue
    state = ServiceState(settings, store, build_verifier(settings, store))
    # Migrations (or the schema check) once the settings and files are known to be good,
    # before anything is answered.
    store.open()
    auth = Authenticator(settings, state.verifier)

    app = FastAPI(
        title="B12 CDS",
        description="CDS Hooks 2.0 service for vitamin B12 deficiency",
        version=state.engine.protocol.version,
        # FastAPI's /docs loads Swagger UI from a CDN: the service serves its own (api_docs).
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs else None,
        redirect_slashes=False,
        lifespan=lifespan,
        # The service's metrics and logs are its own (/metrics, the JSON log); FastAPI's native
        # OpenTelemetry would otherwise look for a configured provider on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.cds = state
    app.state.fetcher = shared_fetcher
    app.state.plan_record_source = FhirRecordSource(
        shared_fetcher,
        settings.fhir_base_url,
        settings.fhir_access_token,
        reader=process_pool(settings.read_processes),
    )
    app.state.clock = clock
    app.state.public_base_url = settings.public_base_url

    install_error_handlers(app)
    openapi.install(app)
    readiness = health.readiness_of(state)
    app.state.readiness = readiness  # parts with a dependency add their check to it
    readiness.add("database", store.readiness)
    # The hook routes first: every call is matched against the routes in order, and the hooks
    # are what EHRs call most (no other route shares their paths).
    app.include_router(hooks.build_router(state, auth))
    app.include_router(health.build_router(state, readiness))
    if settings.metrics:
        app.include_router(metrics.build_router(counters))
    if settings.docs:
        app.include_router(api_docs.build_router())
    # $apply reads patient data, so it is authenticated as the hooks are.
    app.include_router(
        plan_operation.build_router(
            state.engine,
            authenticate=auth.verified,
            max_body_bytes=settings.max_body_bytes,
            max_resources=settings.max_resources,
            record=state.audit_plan,
            record_unavailable=state.audit_plan_unavailable,
            extra_resources=[GUIDANCE_RESPONSE_CAPABILITY],
            reader=process_pool(settings.read_processes),
        )
    )
    # The audit trail and the analytics: operator credential only.
    app.include_router(
        build_operator_router(
            store, OperatorCredential(settings.operator_token), settings.public_base_url
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

    # The last added runs first: the request id exists before anything else looks at the call.
    # The innermost: an exception no route handled is answered here (through the headers and
    # CORS middleware), so none reaches the server and its log.
    app.add_middleware(LastResortMiddleware)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        expose_headers=["X-Request-ID"],
        max_age=600,
    )
    app.add_middleware(SecurityHeadersMiddleware)
    # The metrics, then the access log line, of every finished call.
    app.add_middleware(ObserveMiddleware, observers=(metrics_observer(counters), log_call))
    app.add_middleware(TrailingSlashMiddleware)
    app.add_middleware(RequestIdMiddleware)
    # And the outermost: a fault in the middleware above is a JSON 500 as well, never
    # Starlette's plain-text one, and never re-raised to the server.
    app.add_middleware(LastResortMiddleware)
    return app


@cache
def _default_app() -> FastAPI:
    settings = startup.or_exit(Settings.from_env)
    logs.configure(settings.log_format)
    return startup.or_exit(lambda: create_app(settings))


def __getattr__(name: str) -> Any:
    # `uvicorn cds_service.app:app` looks the attribute up; build the configured app then.
    if name == "app":
        return _default_app()
    raise AttributeError(name)
