"""The baseline: the same stack (FastAPI + uvicorn, same flags) doing no clinical work.

`POST /cds-services/{id}` reads the body and parses it with the parser the service uses
(orjson), then answers a fixed card rendered by orjson, as the service renders its cards;
`GET /cds-services` answers a fixed discovery document of the same size as the service's
through `JSONResponse`, as the service's does. What the service achieves relative to this app is
the cost of its own work: the rest is the floor set by uvicorn, Starlette, the HTTP parser and
the JSON parser on this machine.

Run with: `python -m uvicorn bench.baseline:app --workers 1 --no-access-log`.
"""

from __future__ import annotations

from typing import Any

import orjson
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


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/cds-services")
async def discovery() -> JSONResponse:
    return JSONResponse(DISCOVERY)


@app.post("/cds-services/{service_id}")
async def call_service(service_id: str, request: Request) -> JSONResponse:
    body = orjson.loads(await request.body())
    if not isinstance(body, dict):
        return OrjsonResponse({"error": {"status": 400}}, status_code=400)
    return OrjsonResponse({"cards": [CARD]})
