"""Real EHR traffic through HTTP: the CDS Hooks sandbox's request shapes, paginated and partial
prefetch, subject references of every form, and the errors a client can act on."""

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
from cds_service.fhir.search_completeness import PARTIAL_OUTCOME, PARTIAL_TOTAL
from cds_service.hooks.prefetch import PAGINATED
from cds_service.hooks.prefetch_templates import PREFETCH
from cds_service.offload.pool import OFFLOAD_BYTES, process_pool

from .fetching import post_fetching, without_prefetch
from .helpers import BASE_URL, START, client, golden_request
from .test_fallback_fetch import clinical

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


async def completed_call(server: FhirTestServer, prefetch: dict[str, Any]) -> httpx.Response:
    """The sandbox's call with `prefetch`, the service allowed to follow its pages on `server`
    (whose requests are recorded from here on)."""
    body = sandbox_request(
        "patient-view",
        LONG,
        fhir_server=server.base_url,
        prefetch=prefetch,
        access_token=server.token,
    )
    server.clear_requests()
    async with sandbox_client(sandbox_app([server.base_url])) as c:
        return await c.post(PV, json=body)


# --- 1. paginated prefetch -----------------------------------------------------------------


async def test_paginated_prefetch_is_completed_through_the_fallback_fetch(
    long_server: FhirTestServer,
) -> None:
    prefetch = first_pages(long_server, LONG)
    page = prefetch["observations"]
    assert any(link["relation"] == "next" for link in page["link"])
    assert "b12" not in json.dumps(page["entry"]).lower().replace("b12gp", "")  # Hb only
    assert page["total"] > len(page["entry"])  # met once the next pages are in
    r = await completed_call(long_server, prefetch)
    assert r.status_code == 200, r.text
    kinds = [card["extension"]["card"] for card in r.json()["cards"]]
    assert "treatment" in kinds
    # Only the remaining page was asked for, with the EHR's token.
    asked = long_server.requests
    assert [q.path for q in asked] == ["/fhir/Observation"]
    assert "_getpages" in asked[0].query


async def test_paginated_prefetch_whose_pages_fall_short_of_its_total_is_412(
    long_server: FhirTestServer,
) -> None:
    prefetch = first_pages(long_server, LONG)
    prefetch["observations"]["total"] += 3
    r = await completed_call(long_server, prefetch)
    assert r.status_code == 412, r.text
    reason = r.json()["error"]["reasons"]["observations"]
    assert reason == f"{PAGINATED}; its next pages: {PARTIAL_TOTAL}"


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
    await assert_medications_not_checked(body)


async def assert_medications_not_checked(body: dict[str, Any]) -> None:
    """s7's call answered without its medicationRequests, named "Not checked"."""
    async with client() as c:
        r = await c.post(PV, json=body)
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    treatment = next(c for c in cards if c["extension"]["card"] == "treatment")
    assert "**Not checked**" in treatment["detail"] and "medicationRequests" in treatment["detail"]
    # The current B12 therapy on part of the list is not read as the whole list (no S7).
    assert not any(c["extension"]["card"] == "safety-S7" for c in cards)


def _outcome(severity: str, code: str, diagnostics: str) -> dict[str, Any]:
    return {
        "resource": {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
        },
        "search": {"mode": "outcome"},
    }


def _with_outcome(severity: str, code: str, diagnostics: str) -> Any:
    def shape(bundle: dict[str, Any]) -> None:
        bundle["entry"].append(_outcome(severity, code, diagnostics))

    return shape


def _total_plus(extra: int) -> Any:
    def shape(bundle: dict[str, Any]) -> None:
        bundle["total"] = len(bundle["entry"]) + extra

    return shape


def _without_mode_and_outcome(bundle: dict[str, Any]) -> None:
    """An OperationOutcome entry without `search.mode`: still not a match."""
    bundle["entry"].append(
        {"resource": {"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]}}
    )


PARTIAL = {
    "error outcome": _with_outcome("error", "exception", "query timed out in shard 2"),
    "fatal outcome": _with_outcome("fatal", "exception", "backend unavailable"),
    "warning: incomplete": _with_outcome("warning", "incomplete", "more results exist"),
    "warning says truncated": _with_outcome(
        "warning", "processing", "Search results truncated: only the first 2 of 140 returned"
    ),
    "outcome without a mode": _without_mode_and_outcome,
    "total above the matches, no next link": _total_plus(138),
}
PARTIAL_WHY = {
    "total above the matches, no next link": PARTIAL_TOTAL,
}


def _partial_why(shape: str) -> str:
    return PARTIAL_WHY.get(shape, PARTIAL_OUTCOME)


@pytest.mark.parametrize("shape", PARTIAL.keys())
async def test_a_partial_required_bundle_is_412_naming_the_key_and_why(shape: str) -> None:
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    PARTIAL[shape](body["prefetch"]["observations"])
    body.pop("fhirServer", None)
    body.pop("fhirAuthorization", None)
    async with client() as c:
        r = await c.post(PV, json=body)
    assert r.status_code == 412, r.text
    error = r.json()["error"]
    assert error["missing"] == ["observations"]
    assert error["reasons"]["observations"] == f"{_partial_why(shape)}; no fhirServer given"
    # What the EHR wrote in its OperationOutcome is never echoed.
    assert "140" not in r.text and "shard" not in r.text


@pytest.mark.parametrize("shape", PARTIAL.keys())
async def test_a_partial_optional_bundle_is_named_not_checked_and_not_used(shape: str) -> None:
    body = golden_request("s7-active-b12-therapy", "patient-view")
    PARTIAL[shape](body["prefetch"]["medicationRequests"])
    await assert_medications_not_checked(body)


def _no_total(bundle: dict[str, Any]) -> None:
    bundle.pop("total", None)


def _total_below(bundle: dict[str, Any]) -> None:
    bundle["total"] = 0


WHOLE = {
    "total equal to the matches": lambda bundle: None,
    "no total": _no_total,
    "total below the matches": _total_below,
    "information outcome": _with_outcome("information", "informational", "results truncated"),
    "warning that leaves nothing out": _with_outcome("warning", "processing", "code unknown"),
}


@pytest.mark.parametrize("shape", WHOLE.keys())
async def test_a_whole_bundle_answers_as_without_the_shape(shape: str) -> None:
    body = golden_request("s7-active-b12-therapy", "patient-view")
    async with client() as c:
        before = await c.post(PV, json=body)
        for key in ("observations", "medicationRequests"):
            WHOLE[shape](body["prefetch"][key])
        after = await c.post(PV, json=body)
    assert before.status_code == after.status_code == 200, after.text
    assert clinical(after.json()["cards"]) == clinical(before.json()["cards"])
    assert "**Not checked**" not in after.text


async def test_included_resources_are_not_counted_as_matches() -> None:
    body = golden_request("med-referenced-medication-b12-statement", "patient-view")
    statements = body["prefetch"]["medicationStatements"]
    modes = [e["search"]["mode"] for e in statements["entry"]]
    assert "include" in modes and statements["total"] == modes.count("match")
    async with client() as c:
        whole = await c.post(PV, json=body)
        statements["total"] += 1
        short = await c.post(PV, json=body)
    assert whole.status_code == short.status_code == 200, short.text
    assert "**Not checked**" not in whole.text
    assert "medicationStatements" in short.text and "**Not checked**" in short.text


async def test_a_partial_bundle_is_searched_again_through_the_fallback_fetch(
    fhir_server: FhirTestServer,
) -> None:
    slug = "t6-unspecified-low-b12"
    body = without_prefetch(golden_request(slug, "patient-view"), fhir_server, *PREFETCH)
    whole = await post_fetching(body)
    PARTIAL["warning says truncated"](body["prefetch"]["observations"])
    fhir_server.clear_requests()
    again = await post_fetching(body)
    assert whole.status_code == again.status_code == 200, again.text
    assert clinical(again.json()["cards"]) == clinical(whole.json()["cards"])
    assert [q.path for q in fhir_server.requests] == ["/fhir/Observation"]


async def test_a_partial_bundle_the_server_also_cuts_short_is_412_saying_both(
    fhir_server: FhirTestServer,
) -> None:
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    PARTIAL["total above the matches, no next link"](body["prefetch"]["observations"])
    fetching = without_prefetch(body, fhir_server, *PREFETCH)
    fhir_server.set_mode("500", "Observation")
    r = await post_fetching(fetching)
    assert r.status_code == 412, r.text
    reason = r.json()["error"]["reasons"]["observations"]
    assert reason.startswith(f"{PARTIAL_TOTAL}; searched again: ")


def _large(bundle: dict[str, Any], results: int) -> None:
    """`results` more old haemoglobin results: a request the reading process cuts down."""
    hb = next(e for e in bundle["entry"] if "718-7" in json.dumps(e["resource"]["code"]))
    for i in range(results):
        old = copy.deepcopy(hb)
        old["resource"]["id"] = f"hb-old-{i}"
        old["resource"]["effectiveDateTime"] = f"{2019 - i // 12:04d}-{1 + i % 12:02d}-01"
        old["resource"].pop("issued", None)
        bundle["entry"].insert(0, old)
    bundle["total"] = len(bundle["entry"])


LARGE = {
    "whole": (lambda bundle: None, 200),
    "total above the matches": (_total_plus(1), 412),
    "truncation warning": (PARTIAL["warning: incomplete"], 412),
}


@pytest.mark.parametrize("shape", LARGE.keys())
async def test_a_large_request_is_read_partial_or_whole_as_the_whole_would_be(shape: str) -> None:
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    observations = body["prefetch"]["observations"]
    _large(observations, 1500)
    change, status = LARGE[shape]
    change(observations)
    assert len(json.dumps(body)) > OFFLOAD_BYTES
    await process_pool(1).ready()
    async with client() as c:
        r = await c.post(PV, json=body)
    assert r.status_code == status, r.text
    if status == 412:
        assert r.json()["error"]["missing"] == ["observations"]
    else:
        assert any(card["extension"]["card"] == "treatment" for card in r.json()["cards"])


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
