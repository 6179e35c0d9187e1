"""The OpenAPI description as a contract, checked by schemathesis against the running app.

Each documented operation gets generated requests (bounded: about a minute in all); every
answer must be no 5xx, a documented status, the documented content type and a body that
validates against its schema. The app runs twice: with authentication off, so generated
requests reach every route's own checks, and as deployed, with authentication on, where the
routes a CDS client calls get requests signed as the CDS Hooks sandbox signs them and requests
with no token or a forged one, whose 401 must keep the contract too.
"""

from __future__ import annotations

import json
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from sandbox_client import SANDBOX_ISS, sandbox_jwks, sandbox_jwt
from support import isolated_settings

from cds_service.app import create_app
from cds_service.hooks.services import SERVICES
from cds_service.settings import Settings

START = date(2026, 12, 1)
APP = create_app(Settings(auth=False), clock=lambda: START)
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP)
#: Generated requests per operation: the three runs take about a minute in all.
EXAMPLES = 20
SIGNED_EXAMPLES = 10
UNSIGNED_EXAMPLES = 5


def bounded(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )


def _trusting_the_sandbox() -> str:
    path = Path(tempfile.mkdtemp(prefix="b12-contract-")) / "clients.json"
    path.write_text(json.dumps([{"iss": SANDBOX_ISS, "jwks": sandbox_jwks()}]))
    return str(path)


#: What schemathesis' ASGI client calls; the JWT audience is this plus the path.
BASE_URL = "http://localhost"
SECURED_APP = create_app(
    isolated_settings(auth=True, public_base_url=BASE_URL, clients_file=_trusting_the_sandbox()),
    clock=lambda: START,
)
#: The operations a CDS client calls with its JWT: the hooks, their feedback and $apply.
SECURED = schemathesis.openapi.from_asgi("/openapi.json", SECURED_APP).include(
    path_regex=r"^/(cds-services/\{service_id\}|fhir/PlanDefinition/\{resource_id\}/\$apply)"
)


SERVICE_IDS = sorted(SERVICES)
PLAN_DEFINITION = "b12-deficiency-standard"


def _known_ids(case: Any) -> None:
    """A real service or PlanDefinition in place of the generated id, so that the generated
    headers and bodies reach authentication and what the route checks after it."""
    params = case.path_parameters
    if "service_id" in params:
        params["service_id"] = SERVICE_IDS[len(str(params["service_id"])) % len(SERVICE_IDS)]
    if "resource_id" in params:
        params["resource_id"] = PLAN_DEFINITION


def _signed(case: Any) -> dict[str, str]:
    # The audience is the URL called, as the client sends it (percent-encoded).
    return {"Authorization": f"Bearer {sandbox_jwt(BASE_URL + case.formatted_path)}"}


@SCHEMA.parametrize()
@bounded(EXAMPLES)
def test_every_operation_keeps_its_contract(case: Any) -> None:
    case.call_and_validate()


@SECURED.parametrize()
@bounded(SIGNED_EXAMPLES)
def test_signed_calls_keep_the_contract_with_authentication_on(case: Any) -> None:
    _known_ids(case)
    # One path template serves every hook, so the description cannot tie `hook` to the
    # service id: a schema-valid body with another service's hook is rightly a 400.
    response = case.call_and_validate(
        headers=_signed(case), excluded_checks=[schemathesis.checks.positive_data_acceptance]
    )
    # A JWT signed with the sandbox's key for this very URL is accepted.
    assert response.status_code != 401, (case.method, case.formatted_path)


@SECURED.parametrize()
@bounded(UNSIGNED_EXAMPLES)
def test_calls_without_a_valid_token_are_a_documented_401(case: Any) -> None:
    _known_ids(case)
    forged = sandbox_jwt(BASE_URL + "/somewhere-else")  # signed, for another URL
    for headers in ({}, {"Authorization": f"Bearer {forged}"}, {"Authorization": "Bearer x.y.z"}):
        response = case.call_and_validate(headers=headers)
        if case.method.upper() != case.operation.method.upper():
            # A method the path does not serve is refused before anything else.
            assert response.status_code == 405, (case.method, case.formatted_path)
            continue
        assert response.status_code == 401, (case.method, case.formatted_path, headers)
        assert response.headers["www-authenticate"] == ["Bearer"]


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
        assert (await c.get("/docs/assets/swagger-ui-bundle.js")).status_code == 404
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=APP), base_url="http://testserver"
    ) as c:
        page = await c.get("/docs")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        script = await c.get("/docs/assets/swagger-ui-bundle.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert "Apache License" in (await c.get("/docs/assets/LICENSE")).text
        # Only the files the page needs: nothing else of the package directory is served.
        for name in ("SOURCE", "..%2F__init__.py", "index.html"):
            assert (await c.get(f"/docs/assets/{name}")).status_code == 404
