"""Medications named by `medicationReference` through CDS Hooks: included in the prefetch,
contained, or a Bundle entry by `urn:uuid:`; each read like a coded medication (S7, S3)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from .helpers import client, golden_request

pytestmark = pytest.mark.anyio
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
URN = "urn:uuid:9d0b6c44-1a2f-4b8e-8f3e-5c2d7a1e4f60"


def _rules(cards: list[dict[str, Any]]) -> set[str]:
    return {r for c in cards for r in c["extension"]["rules"]}


def _kinds(cards: list[dict[str, Any]]) -> set[str]:
    return {c["extension"]["card"] for c in cards}


def _medication() -> dict[str, Any]:
    return {
        "resourceType": "Medication",
        "id": "med-b12",
        "code": {"coding": [{"system": RX, "code": "211965"}]},
        "ingredient": [{"itemCodeableConcept": {"text": "Cyanocobalamin"}}],
    }


def _statement(reference: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationStatement",
        "id": "stmt-1",
        "status": "active",
        "medicationReference": {"reference": reference},
        "subject": {"reference": "Patient/b12gp-016"},
        "effectivePeriod": {"start": "2026-11-05"},
    }


async def _cards(body: dict[str, Any]) -> list[dict[str, Any]]:
    async with client() as c:
        response = await c.post("/cds-services/b12-patient-view", json=body)
    assert response.status_code == 200, response.text
    cards: list[dict[str, Any]] = response.json()["cards"]
    return cards


async def test_S7_medication_included_in_the_prefetch_is_read() -> None:
    """`_include=MedicationStatement:medication`: the Medication is an `include` entry."""
    body = copy.deepcopy(golden_request("t5-vegan-diet", "patient-view"))
    assert "S7" not in _rules(await _cards(body))
    body["prefetch"]["medicationStatements"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "fullUrl": "https://ehr.example.org/fhir/MedicationStatement/stmt-1",
                "resource": _statement("Medication/med-b12"),
                "search": {"mode": "match"},
            },
            {
                "fullUrl": "https://ehr.example.org/fhir/Medication/med-b12",
                "resource": _medication(),
                "search": {"mode": "include"},
            },
        ],
    }
    assert "S7" in _rules(await _cards(body))


async def test_S7_medication_by_urn_uuid_of_a_prefetch_entry() -> None:
    body = copy.deepcopy(golden_request("t5-vegan-diet", "patient-view"))
    body["prefetch"]["medicationStatements"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"fullUrl": "urn:uuid:0c7e", "resource": _statement(URN)},
            {"fullUrl": URN, "resource": _medication(), "search": {"mode": "include"}},
        ],
    }
    assert "S7" in _rules(await _cards(body))


async def test_S7_contained_medication_golden_request() -> None:
    cards = await _cards(golden_request("med-contained-medication-b12-on-therapy", "patient-view"))
    assert "S7" in _rules(cards)
    assert "treatment" not in _kinds(cards)


async def test_S3_folic_acid_draft_with_its_medication_in_draft_orders() -> None:
    body = golden_request("med-referenced-medication-folic-acid-draft", "order-sign")
    kinds = [e["resource"]["resourceType"] for e in body["context"]["draftOrders"]["entry"]]
    assert kinds == ["MedicationRequest", "Medication"]
    async with client() as c:
        response = await c.post("/cds-services/b12-order-sign", json=body)
    assert response.status_code == 200, response.text
    assert "safety-S3" in _kinds(response.json()["cards"])


async def test_a_medication_key_still_refuses_other_resource_types() -> None:
    body = copy.deepcopy(golden_request("t5-vegan-diet", "patient-view"))
    body["prefetch"]["medicationStatements"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Condition", "id": "c1"}}],
    }
    async with client() as c:
        response = await c.post("/cds-services/b12-patient-view", json=body)
    assert response.status_code == 400


async def test_S7_unrecognised_code_only_medications_are_named_not_checked() -> None:
    cards = await _cards(golden_request("med-unrecognised-code-only-not-checked", "patient-view"))
    (card,) = [c for c in cards if c["extension"]["card"] == "medications-not-checked"]
    assert card["indicator"] == "warning"
    assert len(card["summary"]) < 140
    assert (
        f"- not checked: `MedicationStatement/b12gp-113-medstmt-9`, unrecognised code {RX}|846934"
        in card["detail"]
    )
    assert (
        "- not checked: `MedicationRequest/b12gp-113-medreq-9`, medication "
        "Medication/b12gp-113-med-absent is not in the record" in card["detail"]
    )
    # The rest of the answer still stands: the untreated deficiency gets its treatment card.
    assert "treatment" in _kinds(cards)


async def test_S7_no_not_checked_card_when_every_medication_was_read() -> None:
    for slug in ("t5-vegan-diet", "med-contained-medication-b12-on-therapy", "t4-metformin"):
        assert "medications-not-checked" not in _kinds(
            await _cards(golden_request(slug, "patient-view"))
        )


async def test_S3_code_only_draft_is_named_on_order_sign() -> None:
    body = copy.deepcopy(golden_request("t6-unspecified-low-b12", "patient-view"))
    body["hook"] = "order-sign"
    draft = {
        "resourceType": "MedicationRequest",
        "id": "draft-code-only",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RX, "code": "846934"}]},
        "subject": {"reference": "Patient/b12gp-017"},
    }
    body["context"] = {
        **body["context"],
        "draftOrders": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": draft}],
        },
    }
    async with client() as c:
        response = await c.post("/cds-services/b12-order-sign", json=body)
    assert response.status_code == 200, response.text
    (card,) = [
        c for c in response.json()["cards"] if c["extension"]["card"] == "medications-not-checked"
    ]
    assert f"`MedicationRequest/draft-code-only`, unrecognised code {RX}|846934" in card["detail"]
