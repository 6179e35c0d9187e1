"""The validation floor: the baseline plus the clinical work no answer can skip.

`POST /cds-services/{id}` parses the body as the baseline does, takes the resources out of each
prefetch value as the service does (`hooks.prefetch.resources_of`, which also refuses another
patient's data), then runs the service's own fact extraction and rules on them: the extractor
picks the resources the rules could read (by type, status and code on the raw JSON) and the
strict R4 validator (cds_service.fhir.validation) checks each one as it is read (the patient
and conditions while extracting, a result when a rule first looks it up). It answers the
baseline's fixed card, or 400 when the prefetch is refused or a resource the rules read is not
valid FHIR.

The service cannot be faster than this app while it validates what its rules read, so this
app's share of the baseline bounds the service's share from above. What separates the service
from the floor is the rest of its work: its checks of the request envelope, the regimen, the
cards and the MedicationRequest series.

Run with: `python -m uvicorn bench.floor:app --workers 1 --no-access-log`.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
from fastapi import FastAPI, Request

from bench.baseline import CARD, OrjsonResponse
from cds_service.clinical.extract import InvalidResourceError
from cds_service.engine import Engine
from cds_service.heap import settle
from cds_service.hooks.prefetch import PrefetchError, resources_of

ENGINE = Engine.build()
settle()  # the collector settings the service runs with

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def prefetched(body: dict[str, Any]) -> list[Any]:
    """Every resource of the prefetch, read and checked as the service reads it."""
    prefetch, context = body.get("prefetch"), body.get("context")
    if not isinstance(prefetch, dict) or not isinstance(context, dict):
        raise PrefetchError("no prefetch or context")
    patient = str(context.get("patientId"))
    return [r for key, value in prefetch.items() for r in resources_of(key, value, patient) or ()]


@app.post("/cds-services/{service_id}")
async def call_service(service_id: str, request: Request) -> OrjsonResponse:
    body = orjson.loads(await request.body())
    if not isinstance(body, dict):
        return OrjsonResponse({"error": {"status": 400}}, status_code=400)
    try:
        today = date.today()
        facts = ENGINE.extractor.extract(prefetched(body), today=today)
        # The cards name every result set aside (D9), so the service validates those too.
        _ = ENGINE.assessor.assess(facts, day=today).unusable
    except (PrefetchError, InvalidResourceError):
        return OrjsonResponse({"error": {"status": 400}}, status_code=400)
    return OrjsonResponse({"cards": [CARD]})
