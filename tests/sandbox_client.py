"""Requests shaped exactly as the official CDS Hooks sandbox (github.com/cds-hooks/sandbox) sends
them, so the tests meet the sandbox's quirks rather than textbook requests:

- the JWT (`src/retrieve-data-helpers/jwt-generator.js`): ES384, header `typ`, `kid` and a `jku`
  at sandbox.cds-hooks.org, payload `iss`, `aud`, `exp` = `iat` + 300 s, `jti`;
- the draft order (`src/reducers/medication-reducers.js`, `createFhirResource`): a
  MedicationRequest `request-123` with `category` as an object (R4 wants an array), a dose in
  `{pill}`, `dispenseRequest`, and a `draftOrders` Bundle without `type`;
- prefetch (`src/retrieve-data-helpers/service-exchange.js`): each key the FHIR server's first
  search page as it came, `link` `next` included (the sandbox never follows it).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt

KEYS = Path(__file__).resolve().parent / "sandbox_keys"
SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"


def sandbox_jwks() -> dict[str, Any]:
    """The sandbox's published JWK set (its `build/.well-known/jwks.json`)."""
    return json.loads((KEYS / "jwks.json").read_text())


def sandbox_jwt(audience: str) -> str:
    """A token as `generateJWT(url)` makes it, signed with the sandbox's own key."""
    now = round(time.time())
    payload = {
        "iss": SANDBOX_ISS,
        "aud": audience,
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
    }
    headers = {"alg": "ES384", "typ": "JWT", "kid": SANDBOX_KID, "jku": SANDBOX_JKU}
    key = (KEYS / "ecprivkey.pem").read_bytes()
    return jwt.encode(payload, key, algorithm="ES384", headers=headers)


class SignedBySandbox(httpx.Auth):
    """Signs every POST as the sandbox does: `Authorization: Bearer <generateJWT(url)>`."""

    def auth_flow(self, request: httpx.Request) -> Any:
        if request.method == "POST":
            request.headers["Authorization"] = f"Bearer {sandbox_jwt(str(request.url))}"
        yield request


def sandbox_draft(
    patient_id: str, rxnorm: str, name: str, *, per_day: int = 1, pills: int = 1
) -> dict[str, Any]:
    """`createFhirResource` for R4 after the user picked a medicine, dose and supply duration."""
    return {
        "resourceType": "MedicationRequest",
        "id": "request-123",
        "status": "draft",
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": time.strftime("%Y-%m-%d"),
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": pills,
                            "system": "http://unitsofmeasure.org",
                            "code": "{pill}",
                        }
                    }
                ],
            }
        ],
        "dispenseRequest": {
            "expectedSupplyDuration": {
                "value": 30,
                "unit": "days",
                "system": "http://unitsofmeasure.org",
                "code": "d",
            }
        },
        "intent": "order",
        # Invalid R4 (MedicationRequest.category is 0..*): the sandbox sends it so.
        "category": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                    "code": "community",
                }
            ]
        },
        "medicationCodeableConcept": {
            "text": name,
            "coding": [
                {
                    "display": name,
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": rxnorm,
                }
            ],
        },
    }


def sandbox_order_context(hook: str, draft: dict[str, Any]) -> dict[str, Any]:
    """The `context` of rx-view (order-select) or rx-sign (order-sign)."""
    bundle = {"resourceType": "Bundle", "entry": [{"resource": draft}]}
    if hook == "order-select":
        return {"selections": [f"{draft['resourceType']}/{draft['id']}"], "draftOrders": bundle}
    return {"draftOrders": bundle}


def sandbox_prefetch(
    fhir_base: str, token: str | None, templates: dict[str, str], patient_id: str
) -> dict[str, Any]:
    """Each prefetch key as the sandbox fills it: the server's answer, first page only."""
    headers = {"Accept": "application/json+fhir"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    out: dict[str, Any] = {}
    with httpx.Client(timeout=10) as http:
        for key, template in templates.items():
            query = template.replace("{{context.patientId}}", patient_id)
            path, _, params = query.partition("?")
            url = f"{fhir_base}/{path}" + (f"?{params}" if params else "")
            answer = http.get(url, headers=headers)
            if answer.status_code == 200 and answer.json():
                out[key] = answer.json()
    return out


def sandbox_request(
    hook: str,
    patient_id: str,
    *,
    fhir_server: str,
    prefetch: dict[str, Any],
    context: dict[str, Any] | None = None,
    access_token: str | None = None,
) -> dict[str, Any]:
    """`callServices`: hookInstance, hook, fhirServer, context (patientId, userId), prefetch."""
    body: dict[str, Any] = {
        "hookInstance": str(uuid.uuid4()),
        "hook": hook,
        "fhirServer": fhir_server,
        "context": {"patientId": patient_id, "userId": "Practitioner/example", **(context or {})},
        "prefetch": prefetch,
    }
    if access_token:
        body["fhirAuthorization"] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": "launch/patient openid profile patient/*.read",
            "subject": "48163c5e-88b5-4cb3-92d3-23b800caa927",
        }
    return body
