"""Health probes: `/health/live` (the process answers) and `/health/ready` (it can serve calls).

Liveness depends on nothing outside the process, so a slow EHR never gets the pod restarted.
Readiness runs the registered checks (cds_service.readiness): the protocol tables are loaded,
the trusted-clients file is loaded, and every client's JWK set was fetched at least once or can
be fetched now. A not-ready answer is 503 with the reason of each failing check.
`/health` stays as it was: the protocol served, for people and old probes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from cds_service.openapi import json_body
from cds_service.readiness import Readiness
from cds_service.service_state import ServiceState


def readiness_of(state: ServiceState) -> Readiness:
    """The checks every deployment has; other parts add theirs (a database, a queue)."""
    readiness = Readiness()

    async def protocol() -> str | None:
        p = state.engine.protocol
        return None if p.version and p.profiles else "the protocol tables are not loaded"

    async def clients() -> str | None:
        verifier = state.verifier
        if verifier is None:
            return None  # CDS_AUTH=off: there is no clients file to load
        return None if verifier.client_count else "CDS_CLIENTS_FILE names no trusted client"

    async def jwks() -> str | None:
        if state.verifier is None:
            return None
        problems = await state.verifier.unready_clients()
        return "; ".join(problems) or None

    readiness.add("protocol", protocol)
    readiness.add("clients", clients)
    readiness.add("jwks", jwks)
    return readiness


def build_router(state: ServiceState, readiness: Readiness) -> APIRouter:
    api = APIRouter(tags=["Health"])

    @api.get("/health", responses={200: json_body("Health", "the protocol served")})
    async def health() -> dict[str, Any]:
        p = state.engine.protocol
        return {"status": "ok", "protocol": {"id": p.id, "version": p.version}}

    @api.get("/health/live", responses={200: json_body("Health", "the process answers")})
    async def live() -> dict[str, Any]:
        return {"status": "live"}

    @api.get(
        "/health/ready",
        response_class=JSONResponse,
        responses={
            200: json_body("Readiness", "ready"),
            503: json_body("Readiness", "not ready, with the reason of each failing check"),
        },
    )
    async def ready() -> JSONResponse:
        outcomes = await readiness.run()
        checks = {o.name: "ready" if o.ready else o.reason for o in outcomes}
        if all(o.ready for o in outcomes):
            return JSONResponse({"status": "ready", "checks": checks})
        reasons = [f"{o.name}: {o.reason}" for o in outcomes if not o.ready]
        return JSONResponse(
            {"status": "not ready", "checks": checks, "reasons": reasons}, status_code=503
        )

    return api
