"""The OpenAPI description as a contract, checked by schemathesis against the running app.

Each documented operation gets generated requests (bounded: about a minute in all); every
answer must be no 5xx, a documented status, the documented content type and a body that
validates against its schema.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from cds_service.app import create_app
from cds_service.settings import Settings

APP = create_app(Settings(auth=False), clock=lambda: date(2026, 12, 1))
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP)
#: Generated requests per operation; 11 operations take about a minute on this machine.
EXAMPLES = 25


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_keeps_its_contract(case: Any) -> None:
    case.call_and_validate()


def test_the_description_documents_every_route_with_schemas() -> None:
    document = APP.openapi()
    call = document["paths"]["/cds-services/{service_id}"]["post"]
    assert set(call["responses"]) >= {"200", "400", "401", "404", "412", "413"}
    body = call["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/HookRequest"}
    schemas = document["components"]["schemas"]
    assert {"HookRequest", "FeedbackRequest", "CdsServiceResponse", "Error"} <= set(schemas)
    assert "hookInstance" in schemas["HookRequest"]["properties"]
    apply = document["paths"]["/fhir/PlanDefinition/{resource_id}/$apply"]
    assert set(apply["post"]["responses"]) >= {"200", "400", "401", "404", "412"}


@pytest.mark.anyio
async def test_docs_can_be_switched_off() -> None:
    import httpx

    app = create_app(Settings(auth=False, docs=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        assert (await c.get("/openapi.json")).status_code == 404
        assert (await c.get("/docs")).status_code == 404
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=APP), base_url="http://testserver"
    ) as c:
        assert (await c.get("/docs")).status_code == 200
