"""`GET /health`: the process answers and names the protocol it serves."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from cds_service.service_state import ServiceState


def build_router(state: ServiceState) -> APIRouter:
    api = APIRouter(tags=["Health"])

    @api.get("/health")
    async def health() -> dict[str, Any]:
        p = state.engine.protocol
        return {"status": "ok", "protocol": {"id": p.id, "version": p.version}}

    return api
