"""Facts from FHIR: what the rules read (or a card shows) is validated; invalid FHIR is named."""

from __future__ import annotations

import dataclasses
from datetime import date
from types import MappingProxyType
from typing import Any

import pytest
from records import Record
from support import golden_bundle, golden_expected, golden_slugs, resources_of

from cds_service.clinical import extract
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
    record.resources[-1]["issued"] = "yesterday"  # a usable value in an invalid resource
    with pytest.raises(InvalidResourceError, match=r"Observation/obs-1 is not valid FHIR R4"):
        ENGINE.plan(record.resources, start=date(2026, 12, 1))


def test_a_value_that_is_not_a_number_is_set_aside_and_validated_when_shown() -> None:
    record = Record().b12(90, when="2026-10-01")
    record.resources[-1]["valueQuantity"]["value"] = "not a number"
    plan = ENGINE.plan(record.resources, start=date(2026, 12, 1))
    assert plan.assessment.status == "unknown"  # never a reason to treat
    with pytest.raises(InvalidResourceError, match=r"Observation/obs-1 is not valid FHIR R4"):
        _ = plan.assessment.unusable


def test_resources_no_rule_reads_are_not_validated() -> None:
    record = Record().b12(90)
    record.resources.append({"resourceType": "Condition", "id": "c9", "code": {"text": 12}})
    assert ENGINE.plan(record.resources, start=date(2026, 12, 1)).assessment.status == "confirmed"


MMA = "13964-2"


def _invalid_mma(b12_pmol_l: float) -> Record:
    record = Record().b12(b12_pmol_l).lab(MMA, 0.6, "umol/L")
    record.resources[-1]["issued"] = "yesterday"  # usable value, invalid resource
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
    record.resources[-1]["issued"] = "yesterday"
    invalid = ENGINE.extractor.extract(record.resources)
    assert invalid.unusable_analytes == ("mma",)
    with pytest.raises(InvalidResourceError, match=r"Observation/obs-2"):
        _ = invalid.unusable_results


def _read_only(value: Any) -> Any:
    """The same JSON with every object a read-only Mapping that is not a dict."""
    if isinstance(value, dict):
        return MappingProxyType({k: _read_only(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_read_only(v) for v in value]
    return value


@pytest.mark.parametrize("slug", golden_slugs())
def test_facts_are_the_same_when_the_json_objects_are_not_dicts(
    slug: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsed JSON is read through a dict fast path; any other Mapping must read the same.

    The R4B models take dicts only, so validation is left out: this is about the reading."""
    monkeypatch.setattr(extract, "_validate", lambda resource: None)
    resources = resources_of(golden_bundle(slug))
    start = date.fromisoformat(golden_expected(slug)["start"])
    plain = ENGINE.extractor.extract(resources)
    other = ENGINE.extractor.extract([_read_only(r) for r in resources])
    assert dataclasses.replace(other, results={}) == dataclasses.replace(plain, results={})
    assert dict(other.results) == dict(plain.results)
    assert plain.conditions or plain.results  # the patient has something to read
    assert (
        ENGINE.assessor.assess(other, day=start).rule_ids
        == ENGINE.assessor.assess(plain, day=start).rule_ids
    )


def test_every_type_the_extractor_validates_is_loaded_at_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: set[str] = set()
    validate = extract._validate

    def recording(resource: Any) -> None:
        seen.add(str(resource.get("resourceType")))
        validate(resource)

    monkeypatch.setattr(extract, "_validate", recording)
    for slug in golden_slugs():
        facts = ENGINE.extractor.extract(resources_of(golden_bundle(slug)))
        list(facts.results.values())  # results are validated when read
    assert {"Patient", "Condition", "Observation", "Procedure", "MedicationRequest"} <= seen
    assert seen <= set(extract.VALIDATED_TYPES)
