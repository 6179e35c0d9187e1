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
    assert "(recorded as unconfirmed)" in borderline["borderline-b12"]["detail"]

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
        first_line = card["detail"].splitlines()[0]
        assert first_line.endswith("· severe") and "IM whatever the cause" in card["detail"]
        recommended = [s for s in card["suggestions"] if s["isRecommended"]]
        first = recommended[0]["actions"][0]["resource"]
        assert first["dosageInstruction"][0]["route"]["coding"][0]["code"] == "78421000"
        assert "R6" in card["extension"]["rules"]


def test_S11_card_switches_to_im_and_deletes_the_oral_draft_on_order_hooks() -> None:
    for hook in ("order-select", "order-sign"):
        cards = cards_of("s11-draft-oral-b12-neuropathy", hook)
        kinds = by_kind(cards)
        assert "safety-S7" not in kinds and "treatment" not in kinds
        card = kinds["safety-S11"]
        assert card["indicator"] == "warning" and "switch" in card["summary"].lower()
        first = card["suggestions"][0]
        assert first["isRecommended"]
        assert first["actions"][0] == {
            "type": "delete",
            "description": "Remove the draft order MedicationRequest/b12gp-a08-med-4",
            "resourceId": "MedicationRequest/b12gp-a08-med-4",
        }
        created = [
            a["resource"]
            for a in first["actions"][1:]
            if a["resource"]["resourceType"] == "MedicationRequest"
        ]
        assert len(created) == 4
        routes = {r["dosageInstruction"][0]["route"]["coding"][0]["code"] for r in created}
        assert routes == {"78421000"}


def test_S11_card_on_patient_view_offers_only_im_schedules() -> None:
    kinds = by_kind(cards_of("s11-oral-b12-pernicious-anaemia"))
    assert "treatment" not in kinds and "safety-S7" not in kinds
    card = kinds["safety-S11"]
    labels = [s["label"] for s in card["suggestions"]]
    # 1000 mcg, FDA 100 mcg and the R7 individual maintenance interval: IM schedules only.
    assert labels[0].startswith("Switch to") and len(labels) == 3
    assert labels[2].startswith("Alt: switch to") and "every 2–4 weeks" in labels[2]
    assert "Stop when the first injection is given" in card["detail"]
    stop = card["detail"].split("Stop when the first injection is given:")[1]
    assert "oral tablet (active)" in stop.lower()
    # The monitoring tests are ordered with the switch (no separate monitoring card).
    made = [a["resource"]["resourceType"] for a in card["suggestions"][0]["actions"]]
    assert "ServiceRequest" in made and "monitoring" not in kinds


def test_T3_amended_the_summary_names_the_cause_in_plain_words() -> None:
    card = by_kind(cards_of("t3-short-bowel-syndrome"))["treatment"]
    assert card["summary"].startswith("Start ") and "(short bowel syndrome)" in card["summary"]
    assert "lifelong" in card["detail"]
    unknown = by_kind(cards_of("t3-ileal-resection"))["treatment"]
    assert unknown["summary"].startswith("Start ") and "(ileal resection)" in unknown["summary"]
    assert "resected length not recorded, so treated as lifelong" in unknown["detail"]
    short = by_kind(cards_of("t3-ileal-resection-15cm"))["treatment"]
    assert "15 cm (20 cm or less)" in short["detail"]
    for slug in golden_slugs_with_treatment():
        summary = by_kind(cards_of(slug))["treatment"]["summary"].lower()
        assert "malabsorption: malabsorption" not in summary and "on record" not in summary


def golden_slugs_with_treatment() -> list[str]:
    from support import golden_slugs

    return [s for s in golden_slugs() if "treatment" in by_kind(cards_of(s))]
