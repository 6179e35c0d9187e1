"""Real EHR traffic through HTTP: the CDS Hooks sandbox's request shapes, paginated prefetch,
subject references of every form, and the errors a client can act on."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhirserver import FhirTestServer
from sandbox_client import (
    SANDBOX_ISS,
    SignedBySandbox,
    sandbox_draft,
    sandbox_jwks,
    sandbox_order_context,
    sandbox_prefetch,
    sandbox_request,
)
from support import golden_bundle, isolated_settings

from cds_service.app import create_app
from cds_service.fetch import Allowlist, FhirFetcher
from cds_service.hooks.prefetch_templates import PREFETCH

from .helpers import BASE_URL, START, client, golden_request

pytestmark = pytest.mark.anyio
PV = "/cds-services/b12-patient-view"
LONG = "long-record"


def sandbox_app(fhir_servers: list[str], **settings: Any) -> Any:
    """The service trusting the sandbox locally: its JWKS inline, its FHIR server allowed."""
    path = Path(tempfile.mkdtemp(prefix="b12-sandbox-")) / "clients.json"
    path.write_text(
        json.dumps([{"iss": SANDBOX_ISS, "jwks": sandbox_jwks(), "fhir_servers": fhir_servers}])
    )
    config = isolated_settings(
        auth=True, public_base_url=BASE_URL, clients_file=str(path), **settings
    )
    return create_app(config, fetcher=FhirFetcher(Allowlist()), clock=lambda: START)


def sandbox_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE_URL, auth=SignedBySandbox()
    )


def long_record() -> dict[str, Any]:
    """t6 (low B12, unspecified cause) with 60 haemoglobin results filed before the B12
    results, so that the low B12 is on the second page of a 50-per-page search."""
    bundle = json.loads(
        json.dumps(golden_bundle("t6-unspecified-low-b12")).replace("b12gp-017", LONG)
    )
    resources = [e["resource"] for e in bundle["entry"]]
    hb = next(r for r in resources if r["resourceType"] == "Observation" and "718-7" in str(r))
    others = [r for r in resources if r["resourceType"] != "Observation"]
    b12 = [r for r in resources if r["resourceType"] == "Observation" and r is not hb]
    history = []
    for i in range(60):
        old = copy.deepcopy(hb)
        old["id"] = f"{LONG}-hb-{i}"
        old["effectiveDateTime"] = f"20{10 + i // 12:02d}-{i % 12 + 1:02d}-01"
        old.pop("issued", None)
        history.append(old)
    entries = [*others, *history, hb, *b12]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in entries],
    }


@pytest.fixture
def long_server(fhir_server: FhirTestServer) -> FhirTestServer:
    fhir_server.add_bundle(long_record())
    return fhir_server


def first_pages(server: FhirTestServer, patient: str) -> dict[str, Any]:
    return sandbox_prefetch(server.base_url, server.token, dict(PREFETCH), patient)


# --- 1. paginated prefetch -----------------------------------------------------------------


async def test_paginated_prefetch_is_completed_through_the_fallback_fetch(
    long_server: FhirTestServer,
) -> None:
    prefetch = first_pages(long_server, LONG)
    page = prefetch["observations"]
    assert any(link["relation"] == "next" for link in page["link"])
    assert "b12" not in json.dumps(page["entry"]).lower().replace("b12gp", "")  # Hb only
    body = sandbox_request(
        "patient-view",
        LONG,
        fhir_server=long_server.base_url,
        prefetch=prefetch,
        access_token=long_server.token,
    )
    long_server.clear_requests()
    async with sandbox_client(sandbox_app([long_server.base_url])) as c:
        r = await c.post(PV, json=body)
    assert r.status_code == 200, r.text
    kinds = [card["extension"]["card"] for card in r.json()["cards"]]
    assert "treatment" in kinds
    # Only the remaining page was asked for, with the EHR's token.
    asked = long_server.requests
    assert [q.path for q in asked] == ["/fhir/Observation"]
    assert "_getpages" in asked[0].query


async def test_paginated_required_key_that_cannot_be_followed_is_412_not_all_clear(
    long_server: FhirTestServer,
) -> None:
    """Before: the first page was read as the whole record and the answer was `cards: []`."""
    prefetch = first_pages(long_server, LONG)
    body = sandbox_request(
        "patient-view", LONG, fhir_server=long_server.base_url, prefetch=prefetch
    )
    async with sandbox_client(sandbox_app([])) as c:  # the FHIR server is not allowed
        r = await c.post(PV, json=body)
    assert r.status_code == 412, r.text
    error = r.json()["error"]
    assert error["missing"] == ["observations"]
    assert "more pages (link next)" in error["reasons"]["observations"]
    assert "server not on the allowlist" in error["message"]


async def test_paginated_prefetch_without_a_fhir_fetch_is_412_naming_the_key() -> None:
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    body["prefetch"]["observations"]["link"] = [
        {"relation": "next", "url": "https://ehr.example.org/fhir/Observation?page=2"}
    ]
    body.pop("fhirServer", None)
    body.pop("fhirAuthorization", None)
    async with client() as c:
        r = await c.post(PV, json=body)
    assert r.status_code == 412
    assert r.json()["error"]["missing"] == ["observations"]
    assert "no fhirServer given" in r.json()["error"]["reasons"]["observations"]


async def test_paginated_optional_key_is_named_not_checked_and_its_first_page_unused() -> None:
    body = golden_request("s7-active-b12-therapy", "patient-view")
    body["prefetch"]["medicationRequests"]["link"] = [
        {"relation": "next", "url": "https://ehr.example.org/fhir/MedicationRequest?page=2"}
    ]
    async with client() as c:
        r = await c.post(PV, json=body)
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    treatment = next(c for c in cards if c["extension"]["card"] == "treatment")
    assert "**Not checked**" in treatment["detail"] and "medicationRequests" in treatment["detail"]
    # The first page's current B12 therapy is not read as the whole list (no S7 on half a list).
    assert not any(c["extension"]["card"] == "safety-S7" for c in cards)


# --- 4. another patient's data ---------------------------------------------------------------


def _low_b12_of(body: dict[str, Any]) -> dict[str, Any]:
    return next(
        e["resource"]
        for e in body["prefetch"]["observations"]["entry"]
        if "14685-2" in json.dumps(e["resource"]["code"])
    )


SUBJECTS = {
    "versioned reference": {"reference": "Patient/other/_history/1"},
    "bare id with type": {"reference": "other", "type": "Patient"},
    "absolute URL on another server": {"reference": "https://other.example/fhir/Patient/b12gp-017"},
    "type says Group": {"reference": "Patient/b12gp-017", "type": "Group"},
    "urn:uuid of another entry": {"reference": "urn:uuid:5a0bb1d6-0000-4000-8000-000000000001"},
    "urn:uuid not in the request": {"reference": "urn:uuid:5a0bb1d6-0000-4000-8000-00000000ffff"},
}


@pytest.mark.parametrize("subject", SUBJECTS.values(), ids=SUBJECTS.keys())
async def test_another_patients_result_is_refused_not_dosed(subject: dict[str, Any]) -> None:
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    body["prefetch"]["observations"]["entry"].append(
        {
            "fullUrl": "urn:uuid:5a0bb1d6-0000-4000-8000-000000000001",
            "resource": {"resourceType": "Patient", "id": "other"},
        }
    )
    _low_b12_of(body)["subject"] = subject
    async with client() as c:
        r = await c.post(PV, json=body)
    assert r.status_code == 400, r.text
    assert "subject is not context.patientId" in r.json()["error"]["message"]


OWN = {
    "relative": {"reference": "Patient/b12gp-017"},
    "versioned": {"reference": "Patient/b12gp-017/_history/3"},
    "bare id with type": {"reference": "b12gp-017", "type": "Patient"},
    "absolute on the fhirServer": {"reference": "https://ehr.example.org/fhir/Patient/b12gp-017"},
    "urn:uuid of the patient entry": {"reference": "urn:uuid:5a0bb1d6-0000-4000-8000-000000000002"},
}


@pytest.mark.parametrize("subject", OWN.values(), ids=OWN.keys())
async def test_the_patients_own_references_in_any_form_are_accepted(
    subject: dict[str, Any],
) -> None:
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    body["fhirServer"] = "https://ehr.example.org/fhir"
    patient = body["prefetch"]["patient"]
    body["prefetch"]["patient"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"fullUrl": "urn:uuid:5a0bb1d6-0000-4000-8000-000000000002", "resource": patient}
        ],
    }
    _low_b12_of(body)["subject"] = subject
    async with client() as c:
        r = await c.post(PV, json=body)
    assert r.status_code == 200, r.text
    assert any(card["extension"]["card"] == "treatment" for card in r.json()["cards"])


async def test_a_draft_order_of_another_patient_is_refused() -> None:
    body = golden_request("s2-draft-iv-cyanocobalamin", "order-sign")
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft["subject"] = {"reference": "Patient/other/_history/1"}
    async with client() as c:
        r = await c.post("/cds-services/b12-order-sign", json=body)
    assert r.status_code == 400, r.text
    assert "context.draftOrders" in r.json()["error"]["message"]


async def test_apply_refuses_another_patients_result_in_data() -> None:
    bundle = golden_bundle("t6-unspecified-low-b12")
    for entry in bundle["entry"]:
        if "14685-2" in json.dumps(entry["resource"].get("code", {})):
            entry["resource"]["subject"] = {"reference": "other", "type": "Patient"}
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subject", "valueString": "Patient/b12gp-017"},
            {"name": "data", "resource": bundle},
        ],
    }
    async with client() as c:
        r = await c.post("/fhir/PlanDefinition/b12-deficiency-standard/$apply", json=params)
    assert r.status_code == 422, r.text
    assert "is not the subject" in r.json()["issue"][0]["diagnostics"]


# --- 3. errors say why -------------------------------------------------------------------------


async def test_400_for_invalid_fhir_names_the_element_path_never_the_value() -> None:
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    body["prefetch"]["patient"]["birthDate"] = "Smith 1950"
    body["prefetch"]["patient"]["name"] = {"family": "Smith"}
    async with client() as c:
        r = await c.post(PV, json=body)
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "at birthDate, name" in message and "Smith" not in message


async def test_apply_without_a_fhir_base_url_says_it_is_unset() -> None:
    app = create_app(isolated_settings(auth=False), clock=lambda: START)
    async with client(app, signed=False) as c:
        r = await c.get(
            "/fhir/PlanDefinition/b12-deficiency-standard/$apply",
            params={"subject": "Patient/b12gp-017"},
        )
    assert r.status_code == 412
    assert "CDS_FHIR_BASE_URL is not set" in r.json()["issue"][0]["diagnostics"]


# --- 2. invalid draft orders -----------------------------------------------------------------

B12_INJECTION = ("309594", "cyanocobalamin 1000 MCG/ML Injectable Solution")


def sandbox_order(hook: str, draft: dict[str, Any]) -> dict[str, Any]:
    """An order call as the sandbox's rx-view / rx-sign sends it, for the low-B12 patient."""
    golden = golden_request("t6-unspecified-low-b12", "patient-view")
    return sandbox_request(
        hook,
        "b12gp-017",
        fhir_server="https://launch.smarthealthit.org/v/r4/fhir",
        prefetch=golden["prefetch"],
        context=sandbox_order_context(hook, draft),
    )


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
async def test_the_sandboxs_invalid_draft_is_read_for_what_the_rules_use(hook: str) -> None:
    """Before: `category` as an object made the whole call a 400, shown as "all clear"."""
    draft = sandbox_draft("b12gp-017", *B12_INJECTION)
    assert isinstance(draft["category"], dict)
    async with sandbox_client(sandbox_app([])) as c:
        r = await c.post(f"/cds-services/b12-{hook}", json=sandbox_order(hook, draft))
    assert r.status_code == 200, r.text
    cards = {card["extension"]["card"]: card for card in r.json()["cards"]}
    # The draft was read: it is the drafted B12 therapy that S7 names, and nothing is unchecked.
    assert "MedicationRequest/request-123" in cards["safety-S7"]["detail"]
    assert "draft-order-not-checked" not in cards


async def test_a_draft_whose_read_fields_have_wrong_types_is_named_not_checked() -> None:
    draft = sandbox_draft("b12gp-017", *B12_INJECTION)
    draft["dosageInstruction"][0]["timing"]["repeat"]["period"] = "1"
    async with sandbox_client(sandbox_app([])) as c:
        r = await c.post("/cds-services/b12-order-sign", json=sandbox_order("order-sign", draft))
    assert r.status_code == 200, r.text
    cards = {card["extension"]["card"]: card for card in r.json()["cards"]}
    # The rest of the answer is given: the unread draft may be B12, so the record's cards stay.
    assert "untreated-deficiency" in cards and "treatment" not in cards
    card = cards["draft-order-not-checked"]
    assert card["summary"] == "Not checked: MedicationRequest/request-123"
    assert (
        "not checked: `MedicationRequest/request-123`, "
        "dosageInstruction[0].timing.repeat.period is not a number" in card["detail"]
    )


async def test_an_unreadable_draft_the_rules_do_not_need_is_ignored() -> None:
    draft = sandbox_draft("b12gp-017", "308182", "amoxicillin 250 MG Oral Capsule")
    draft["dosageInstruction"] = {"text": "not an array"}
    async with sandbox_client(sandbox_app([])) as c:
        r = await c.post("/cds-services/b12-order-sign", json=sandbox_order("order-sign", draft))
    assert r.status_code == 200, r.text
    kinds = [card["extension"]["card"] for card in r.json()["cards"]]
    # An order unrelated to B12 gets no treatment card (and the deficiency is not repeated).
    assert kinds == []


async def test_a_draft_with_an_unreadable_medication_is_named_not_checked() -> None:
    draft = sandbox_draft("b12gp-017", *B12_INJECTION)
    draft["medicationCodeableConcept"]["coding"] = {"code": "309594"}
    async with sandbox_client(sandbox_app([])) as c:
        r = await c.post("/cds-services/b12-order-sign", json=sandbox_order("order-sign", draft))
    assert r.status_code == 200, r.text
    card = next(c for c in r.json()["cards"] if c["extension"]["card"] == "draft-order-not-checked")
    assert "medicationCodeableConcept.coding is not an array" in card["detail"]
