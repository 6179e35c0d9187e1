"""The baseline: the same stack (FastAPI + uvicorn, same flags) doing no clinical work.

`POST /cds-services/{id}` reads the body and parses it with the same parser the service uses
(stdlib `json.loads`), then answers a fixed card; `GET /cds-services` answers a fixed discovery
document of the same size as the service's. Both answers go through `JSONResponse`, as the
service's do. What the service achieves relative to this app is the cost of its own work: the
rest is the floor set by uvicorn, Starlette and the HTTP parser on this machine.

Run with: `python -m uvicorn bench.baseline:app --workers 1 --no-access-log`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

CARD: dict[str, Any] = {
    "uuid": "00000000-0000-4000-8000-000000000001",
    "summary": "Baseline card: the request was parsed and nothing else was done",
    "indicator": "info",
    "source": {"label": "B12 CDS baseline"},
}


def _discovery() -> dict[str, Any]:
    """The service's discovery document when importable (same bytes on the wire), else a stub."""
    try:
        from cds_service.hooks.services import SERVICES
    except ImportError:
        return {"services": [{"id": "b12-patient-view", "hook": "patient-view", "prefetch": {}}]}
    return {"services": [s.discovery() for s in SERVICES.values()]}


DISCOVERY = _discovery()

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/cds-services")
async def discovery() -> JSONResponse:
    return JSONResponse(DISCOVERY)


@app.post("/cds-services/{service_id}")
async def call_service(service_id: str, request: Request) -> JSONResponse:
    body = json.loads(await request.body())
    if not isinstance(body, dict):
        return JSONResponse({"error": {"status": 400}}, status_code=400)
    return JSONResponse({"cards": [CARD]})
