"""What the cards say for the second-pass rules (protocol 1.1), on the golden patients."""

from __future__ import annotations

from datetime import date
from typing import Any

from answers import JSON, answer
from support import golden_bundle, golden_expected, resources_of

from cds_service.engine import Engine

ENGINE = Engine.build()
DRAFT_TYPES = ("MedicationRequest", "ServiceRequest")


def cards_of(slug: str, hook: str = "patient-view") -> list[JSON]:
    expected = golden_expected(slug)
    resources: list[dict[str, Any]] = resources_of(golden_bundle(slug))
    drafts = [r for r in resources if r["resourceType"] in DRAFT_TYPES and r["status"] == "draft"]
    return answer(
        ENGINE,
        [r for r in resources if r not in drafts],
        start=date.fromisoformat(expected["start"]),
        hook=hook,
        profile=expected["profile"],
        draft_orders=drafts if hook != "patient-view" else (),
    )


def by_kind(cards: list[JSON]) -> dict[str, JSON]:
    return {c["extension"]["card"]: c for c in cards}


def test_D1_amended_cards_say_the_diagnosis_is_unconfirmed() -> None:
    borderline = by_kind(cards_of("d1-provisional-deficiency-borderline-b12"))
    assert list(borderline) == ["borderline-b12"]
    assert "Diagnosis unconfirmed" in borderline["borderline-b12"]["detail"]
    assert "Condition/b12gp-a01-cond-1" in borderline["borderline-b12"]["detail"]

    alone = by_kind(cards_of("d1-unconfirmed-deficiency-no-b12"))
    assert list(alone) == ["unconfirmed-diagnosis"]
    card = alone["unconfirmed-diagnosis"]
    assert card["indicator"] == "info" and "unconfirmed" in card["summary"]
    order = card["suggestions"][0]["actions"][0]["resource"]
    assert order["resourceType"] == "ServiceRequest"
    assert order["code"]["coding"][0]["code"] == "14685-2"

    typed = by_kind(cards_of("d1-differential-pernicious-anaemia-low-b12"))
    assert "Pernicious anemia (recorded as unconfirmed)" in typed["treatment"]["detail"]
    assert "pernicious" not in typed["treatment"]["summary"].lower()


def test_R6_a_card_that_calls_the_patient_severe_recommends_im_first() -> None:
    for slug in ("r6-severe-anaemia-vegan", "r6-pancytopenia-metformin"):
        card = by_kind(cards_of(slug))["treatment"]
        assert "Severity: severe" in card["detail"] and "Severe deficiency" in card["detail"]
        recommended = [s for s in card["suggestions"] if s["isRecommended"]]
        first = recommended[0]["actions"][0]["resource"]
        assert first["dosageInstruction"][0]["route"]["coding"][0]["code"] == "78421000"
        assert "R6" in card["extension"]["rules"]
