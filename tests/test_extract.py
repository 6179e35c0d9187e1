"""Facts from FHIR: what the rules read (or a card shows) is validated; invalid FHIR is named."""

from __future__ import annotations

from datetime import date

import pytest
from records import Record

from cds_service.clinical.extract import InvalidResourceError
from cds_service.engine import Engine

ENGINE = Engine.build()


def test_only_the_latest_result_per_analyte_is_validated() -> None:
    record = Record().b12(400, when="2026-10-01")
    record.b12(90, when="2025-01-01")
    record.resources[-1]["valueQuantity"]["value"] = "not a number"  # superseded, never read
    plan = ENGINE.plan(record.resources, start=date(2026, 12, 1))
    assert plan.assessment.status == "not-deficient"


def test_invalid_latest_result_is_rejected_by_reference() -> None:
    record = Record().b12(90, when="2026-10-01")
    record.resources[-1]["valueQuantity"]["value"] = "not a number"
    with pytest.raises(InvalidResourceError, match=r"Observation/obs-1 is not valid FHIR R4"):
        ENGINE.plan(record.resources, start=date(2026, 12, 1))


def test_resources_no_rule_reads_are_not_validated() -> None:
    record = Record().b12(90)
    record.resources.append({"resourceType": "Condition", "id": "c9", "code": {"text": 12}})
    assert ENGINE.plan(record.resources, start=date(2026, 12, 1)).assessment.status == "confirmed"


MMA = "13964-2"


def _invalid_mma(b12_pmol_l: float) -> Record:
    record = Record().b12(b12_pmol_l).lab(MMA, 0.6, "umol/L")
    record.resources[-1]["valueQuantity"]["value"] = "raised"
    return record


def test_a_result_is_validated_when_a_rule_reads_it() -> None:
    # Borderline B12 (148-221 pmol/L): D3 reads the MMA, so its invalid resource is refused.
    with pytest.raises(InvalidResourceError, match=r"Observation/obs-2 is not valid FHIR R4"):
        ENGINE.plan(_invalid_mma(180).resources, start=date(2026, 12, 1))


def test_a_result_no_rule_reads_is_not_validated() -> None:
    # B12 below the deficiency threshold decides on its own; no rule looks at the MMA.
    plan = ENGINE.plan(_invalid_mma(90).resources, start=date(2026, 12, 1))
    assert plan.assessment.status == "confirmed"


def test_results_are_validated_on_lookup_once_and_not_by_listing_the_analytes() -> None:
    facts = ENGINE.extractor.extract(_invalid_mma(90).resources)
    assert sorted(facts.results) == ["b12", "mma"]  # the names alone: no validation
    assert facts.results["b12"].value == 90
    with pytest.raises(InvalidResourceError):
        facts.results.get("mma")
    with pytest.raises(InvalidResourceError):
        _ = "mma" in facts.results


def test_an_unusable_result_is_validated_because_a_card_shows_it() -> None:
    record = Record().b12(90).lab(MMA, 0.6, "furlongs")  # a unit the protocol cannot compare
    facts = ENGINE.extractor.extract(record.resources)
    assert [r.analyte for r in facts.unusable_results] == ["mma"]
    record.resources[-1]["valueQuantity"]["value"] = "raised"
    invalid = ENGINE.extractor.extract(record.resources)
    assert invalid.unusable_analytes == ("mma",)
    with pytest.raises(InvalidResourceError, match=r"Observation/obs-2"):
        _ = invalid.unusable_results
