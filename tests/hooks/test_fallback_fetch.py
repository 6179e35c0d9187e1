"""Prefetch resolution with fallback fetch, end to end against a real loopback FHIR server."""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import pytest
from fhirserver import FhirTestServer
from support import golden_expected, isolated_settings

from cds_service.app import create_app
from cds_service.fetch import Allowlist, FhirFetcher

from .fetching import fetching_app, post, post_fetching, without_prefetch
from .helpers import START, client, golden_request, golden_requests

pytestmark = pytest.mark.anyio
PATIENT_VIEWS = [slug for slug, hook in golden_requests() if hook == "patient-view"]


def clinical(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cards without the per-call identifiers, which differ between any two calls."""
    out = []
    for card in cards:
        card = copy.deepcopy(card)
        card.pop("uuid", None)
        for s in card.get("suggestions", []):
            s.pop("uuid", None)
        out.append(card)
    return out


async def apply_from(server: FhirTestServer, patient: str) -> Any:
    """`$apply` reading the patient's record from `server` (CDS_FHIR_BASE_URL)."""
    fetcher = FhirFetcher(Allowlist())
    settings = isolated_settings(
        auth=False, fhir_base_url=server.base_url, fhir_access_token=server.token
    )
    app = create_app(settings, fetcher=fetcher, clock=lambda: START)
    try:
        async with client(app, signed=False) as c:
            return await c.get(
                "/fhir/PlanDefinition/b12-deficiency-standard/$apply",
                params={"subject": f"Patient/{patient}"},
            )
    finally:
        await fetcher.aclose()


@pytest.mark.parametrize("slug", PATIENT_VIEWS)
async def test_same_answer_by_prefetch_or_by_fetch(fhir_server: FhirTestServer, slug: str) -> None:
    profile = golden_expected(slug)["profile"]
    app, fetcher = fetching_app(Allowlist(allow_loopback=True), profile)
    try:
        body = golden_request(slug, "patient-view")
        by_prefetch = await post(app, body)
        by_fetch = await post(app, without_prefetch(body, fhir_server))
    finally:
        await fetcher.aclose()
    assert by_prefetch.status_code == by_fetch.status_code == 200, by_fetch.text
    assert clinical(by_fetch.json()["cards"]) == clinical(by_prefetch.json()["cards"])
    assert fhir_server.requests, "the FHIR server was asked"


async def test_token_forwarded_only_missing_keys_fetched_null_keys_not(
    fhir_server: FhirTestServer,
) -> None:
    app, fetcher = fetching_app(Allowlist(allow_loopback=True))
    body = without_prefetch(
        golden_request("t6-unspecified-low-b12", "patient-view"), fhir_server, "patient"
    )
    body["prefetch"]["allergies"] = None  # the EHR says: nothing matches, do not fetch
    body["prefetch"]["conditions"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout"}],
    }
    try:
        response = await post(app, body)
    finally:
        await fetcher.aclose()
    assert response.status_code == 200
    asked = {r.path.split("/")[-1] for r in fhir_server.requests}
    assert asked == {
        "Condition",
        "Observation",
        "Procedure",
        "MedicationRequest",
        "MedicationStatement",
    }
    assert {r.authorization for r in fhir_server.requests} == {f"Bearer {fhir_server.token}"}


async def test_slow_server_gives_412_within_the_deadline(fhir_server: FhirTestServer) -> None:
    fhir_server.set_mode("slow", seconds=5)
    body = without_prefetch(golden_request("t6-unspecified-low-b12", "patient-view"), fhir_server)
    started = time.monotonic()
    response = await post_fetching(body, timeout=0.5, deadline=1.0)
    assert response.status_code == 412
    assert time.monotonic() - started < 1.5
    assert set(response.json()["error"]["missing"]) >= {"patient", "conditions", "observations"}


@pytest.mark.parametrize("mode", ["401", "404", "500", "invalid", "garbage"])
async def test_unusable_server_gives_412_json(fhir_server: FhirTestServer, mode: str) -> None:
    fhir_server.set_mode(mode)
    body = without_prefetch(golden_request("t6-unspecified-low-b12", "patient-view"), fhir_server)
    response = await post_fetching(body)
    assert response.status_code == 412
    assert response.json()["error"]["status"] == 412
    assert fhir_server.token not in response.text


async def test_server_off_the_allowlist_is_never_contacted(fhir_server: FhirTestServer) -> None:
    body = without_prefetch(golden_request("t6-unspecified-low-b12", "patient-view"), fhir_server)
    response = await post_fetching(body, Allowlist(["https://ehr.example.org/fhir"]))
    assert response.status_code == 412
    assert fhir_server.requests == []


async def test_apply_reads_the_record_from_the_configured_fhir_server(
    fhir_server: FhirTestServer,
) -> None:
    patient = golden_request("t2-pernicious-anemia-d51-0", "patient-view")["context"]["patientId"]
    response = await apply_from(fhir_server, patient)
    assert response.status_code == 200, response.text
    care_plan = response.json()
    meds = [r for r in care_plan["contained"] if r["resourceType"] == "MedicationRequest"]
    assert len(meds) == 4
    assert {r.authorization for r in fhir_server.requests} == {f"Bearer {fhir_server.token}"}


INVALID_B12 = {
    "resourceType": "Observation",
    "id": "fetch-invalid-b12",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "14685-2"}]},
    "subject": {"reference": "Patient/fetch-invalid"},
    "effectiveDateTime": "2026-11-01",
    # A string where R4 wants a decimal: well-formed JSON, a known type, invalid FHIR.
    "valueQuantity": {"value": "low", "unit": "pmol/L"},
}


def _invalid_b12_patient(server: FhirTestServer) -> dict[str, Any]:
    patient = {"resourceType": "Patient", "id": "fetch-invalid", "birthDate": "1960-01-01"}
    server.add_bundle(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": patient}, {"resource": INVALID_B12}],
        }
    )
    body = without_prefetch(golden_request("t6-unspecified-low-b12", "patient-view"), server)
    body["context"]["patientId"] = "fetch-invalid"
    return body


#: Fetched resources the rules read, each invalid at one element; the value is a marker that
#: must never reach the answer or the log (values are patient data).
INVALID_FETCHED = {
    "observations": ("Observation/fetch-invalid-b12", "valueQuantity.value", "low-7731"),
    "conditions": ("Condition/fetch-invalid-pa", "recordedDate", "yesterday-7731"),
}


def _invalid_fetched_record(server: FhirTestServer, key: str) -> dict[str, Any]:
    """A record on the FHIR server with one invalid resource under `key` (the rest valid)."""
    patient = {"resourceType": "Patient", "id": "fetch-invalid", "birthDate": "1960-01-01"}
    b12 = {**INVALID_B12, "valueQuantity": {"value": 120, "unit": "pmol/L"}}
    condition = {
        "resourceType": "Condition",
        "id": "fetch-invalid-pa",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "D51.0"}]},
        "subject": {"reference": "Patient/fetch-invalid"},
        "recordedDate": "2025-01-01",
    }
    if key == "observations":
        b12["valueQuantity"] = {"value": INVALID_FETCHED[key][2], "unit": "pmol/L"}
    else:
        condition["recordedDate"] = INVALID_FETCHED[key][2]
    server.add_bundle(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in (patient, b12, condition)],
        }
    )
    body = without_prefetch(golden_request("t6-unspecified-low-b12", "patient-view"), server)
    body["context"]["patientId"] = "fetch-invalid"
    return body


@pytest.mark.parametrize("key", sorted(INVALID_FETCHED))
async def test_invalid_fhir_fetched_is_412_naming_the_key_and_element_never_the_value(
    fhir_server: FhirTestServer, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    reference, element, value = INVALID_FETCHED[key]
    caplog.set_level(logging.DEBUG)
    response = await post_fetching(_invalid_fetched_record(fhir_server, key))
    assert response.status_code == 412, response.text
    error = response.json()["error"]
    assert error["missing"] == [key]
    reason = error["reasons"][key]
    assert "invalid FHIR" in reason
    assert f"{reference} is not valid FHIR R4 at {element}" in reason
    assert f"{key}: " in error["message"] and element in error["message"]
    assert value not in response.text
    assert value not in caplog.text


async def test_the_same_invalid_fhir_is_400_when_the_client_sent_it(
    fhir_server: FhirTestServer,
) -> None:
    body = _invalid_b12_patient(fhir_server)
    body["prefetch"] = {
        "patient": {"resourceType": "Patient", "id": "fetch-invalid"},
        "conditions": {"resourceType": "Bundle", "type": "searchset"},
        "observations": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": INVALID_B12}],
        },
    }
    response = await post_fetching(body)
    assert response.status_code == 400, response.text
    assert "Observation/fetch-invalid-b12" in response.json()["error"]["message"]


async def test_fetched_resource_unusable_for_its_key_is_412(fhir_server: FhirTestServer) -> None:
    fhir_server.set_mode("invalid", "Observation")  # a searchset whose Observation status is 12
    body = without_prefetch(golden_request("t6-unspecified-low-b12", "patient-view"), fhir_server)
    response = await post_fetching(body)
    assert response.status_code == 412, response.text
    assert response.json()["error"]["missing"] == ["observations"]


async def test_apply_answers_412_when_the_fhir_server_record_is_invalid(
    fhir_server: FhirTestServer,
) -> None:
    _invalid_b12_patient(fhir_server)
    response = await apply_from(fhir_server, "fetch-invalid")
    assert response.status_code == 412, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
