"""The validation floor: the baseline plus the one piece of clinical work no answer can skip.

`POST /cds-services/{id}` parses the body as the baseline does, then gives the prefetched
resources to the service's own `FactExtractor`, which picks the resources the rules read (by
type, status and code on the raw JSON) and validates them with the fhir.resources R4B models.
It answers the baseline's fixed card, or 400 when a resource the rules read is not valid FHIR.

The service cannot be faster than this app while it validates what its rules read, so this
app's share of the baseline bounds the service's share from above. What separates the service
from the floor is everything else it does: its request checks and prefetch resolution, the
rules, the regimen, the cards and the MedicationRequest series.

Run with: `python -m uvicorn bench.floor:app --workers 1 --no-access-log`.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request

from bench.baseline import CARD, OrjsonResponse
from cds_service.clinical.extract import FactExtractor, InvalidResourceError
from cds_service.engine import bundle_resources
from cds_service.heap import settle
from cds_service.protocol import default_protocol

EXTRACTOR = FactExtractor(default_protocol())
settle()  # the collector settings the service runs with

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def prefetched(body: dict[str, Any]) -> list[Any]:
    """Every resource of the prefetch: single resources and the entries of searchset Bundles."""
    resources: list[Any] = []
    prefetch = body.get("prefetch")
    for value in prefetch.values() if isinstance(prefetch, dict) else ():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            resources += bundle_resources(value)
        elif isinstance(value, dict):
            resources.append(value)
    return resources


@app.post("/cds-services/{service_id}")
async def call_service(service_id: str, request: Request) -> OrjsonResponse:
    body = orjson.loads(await request.body())
    if not isinstance(body, dict):
        return OrjsonResponse({"error": {"status": 400}}, status_code=400)
    try:
        EXTRACTOR.extract(prefetched(body))
    except InvalidResourceError:
        return OrjsonResponse({"error": {"status": 400}}, status_code=400)
    return OrjsonResponse({"cards": [CARD]})
