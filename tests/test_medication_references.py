"""Medications given by `medicationReference`, and medications no table recognises.

A B12 or folic acid product named through a Medication (contained, another Bundle entry, or a
Medication of the prefetch) is read by its code and its ingredients (S7, S3, S11 see it); a
medication that could be B12 but cannot be read (a bare code the tables do not hold, nothing at
all, a Medication that is not in the record) is named as not checked, never dropped silently.
"""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

from support import golden_bundle, resources_of

from cds_service.clinical.references import full_urls_of
from cds_service.engine import Engine

ENGINE = Engine.build()
START = date(2026, 12, 1)
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
SERVER = "https://ehr.example.org/fhir"


def _vegan_record() -> list[dict[str, Any]]:
    """Confirmed dietary deficiency (B12 98 pmol/L on 2026-10-27) and no medication."""
    return copy.deepcopy(resources_of(golden_bundle("t5-vegan-diet")))


def _statement(medication: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationStatement",
        "id": "stmt-1",
        "status": "active",
        "subject": {"reference": "Patient/b12gp-016"},
        "effectivePeriod": {"start": "2026-11-05"},
        **medication,
        **extra,
    }


def _b12_medication(mid: str = "med-b12") -> dict[str, Any]:
    """A cyanocobalamin tablet named by its ingredient only (its code is a bare RxNorm code)."""
    return {
        "resourceType": "Medication",
        "id": mid,
        "code": {"coding": [{"system": RX, "code": "211965"}]},
        "ingredient": [{"itemCodeableConcept": {"text": "Cyanocobalamin"}}],
    }


def test_S7_contained_medication_is_read_by_its_ingredient() -> None:
    record = _vegan_record()
    record.append(
        _statement(
            {"medicationReference": {"reference": "#med1"}},
            contained=[{**_b12_medication("med1")}],
        )
    )
    plan = ENGINE.plan(record, start=START)
    assert "S7" in plan.assessment.rule_ids
    assert not plan.assessment.new_course
    (therapy,) = plan.assessment.facts.medications
    assert therapy.label == "Cyanocobalamin"
    assert plan.assessment.facts.unchecked_medications == ()


def test_S7_without_the_reference_a_new_course_would_be_proposed() -> None:
    """The control: the same record without the statement proposes a new course."""
    plan = ENGINE.plan(_vegan_record(), start=START)
    assert "S7" not in plan.assessment.rule_ids
    assert plan.assessment.new_course


def test_S7_medication_of_the_record_by_relative_reference() -> None:
    record = _vegan_record()
    record += [
        _b12_medication(),
        _statement({"medicationReference": {"reference": "Medication/med-b12"}}),
    ]
    assert "S7" in ENGINE.plan(record, start=START).assessment.rule_ids


def test_S7_medication_of_a_bundle_by_urn_uuid() -> None:
    bundle = copy.deepcopy(golden_bundle("t5-vegan-diet"))
    urn = "urn:uuid:6f1d7c1e-3a51-4f8e-9e1b-2f4a7d9c0b11"
    bundle["entry"] += [
        {"fullUrl": urn, "resource": _b12_medication()},
        {"resource": _statement({"medicationReference": {"reference": urn}})},
    ]
    resources = resources_of(bundle)
    plan = ENGINE.plan(resources, start=START, full_urls=full_urls_of(bundle))
    assert "S7" in plan.assessment.rule_ids
    # Without the Bundle's fullUrls the reference names nothing in the record: not checked.
    unresolved = ENGINE.plan(resources, start=START)
    assert "S7" not in unresolved.assessment.rule_ids
    assert unresolved.assessment.facts.unchecked_medications == (
        ("MedicationStatement/stmt-1", f"medication {urn} is not in the record"),
    )


def test_S7_absolute_reference_resolves_only_under_the_records_server() -> None:
    record = _vegan_record()
    record += [
        _b12_medication(),
        _statement({"medicationReference": {"reference": f"{SERVER}/Medication/med-b12"}}),
    ]
    assert "S7" in ENGINE.plan(record, start=START, base_url=SERVER).assessment.rule_ids
    elsewhere = ENGINE.plan(record, start=START, base_url="https://other.example.org/fhir")
    assert "S7" not in elsewhere.assessment.rule_ids
    assert [r for r, _ in elsewhere.assessment.facts.unchecked_medications] == [
        "MedicationStatement/stmt-1"
    ]


def test_S7_reference_to_something_that_is_not_a_medication_is_not_read() -> None:
    record = _vegan_record()
    record.append(_statement({"medicationReference": {"reference": "Patient/b12gp-016"}}))
    plan = ENGINE.plan(record, start=START)
    assert "S7" not in plan.assessment.rule_ids
    assert plan.assessment.facts.unchecked_medications == (
        ("MedicationStatement/stmt-1", "medication Patient/b12gp-016 is not in the record"),
    )


def test_S3_folic_acid_draft_through_a_referenced_medication() -> None:
    bundle = golden_bundle("med-referenced-medication-folic-acid-draft")
    resources = resources_of(bundle)
    drafts = [r for r in resources if r.get("status") == "draft"]
    record = [r for r in resources if r not in drafts]
    # As CDS Hooks sends it: the draft and its Medication in context.draftOrders.
    medication = next(r for r in record if r["resourceType"] == "Medication")
    plan = ENGINE.plan(
        [r for r in record if r is not medication],
        start=START,
        draft_orders=[*drafts, medication],
    )
    assert "S3" in plan.assessment.rule_ids
    (draft,) = plan.assessment.facts.draft_medications
    assert draft.codings == ((RX, "310410"),)


def test_S11_oral_form_of_a_referenced_medication_counts_as_oral_therapy() -> None:
    """A pernicious anaemia patient on a contained cyanocobalamin *oral tablet*: S11 switches."""
    record = copy.deepcopy(resources_of(golden_bundle("t2-pernicious-anemia-d51-0")))
    pid = next(r["id"] for r in record if r["resourceType"] == "Patient")
    medication = {**_b12_medication("med1"), "form": {"text": "Oral tablet"}}
    record.append(
        _statement(
            {"medicationReference": {"reference": "#med1"}},
            contained=[medication],
            subject={"reference": f"Patient/{pid}"},
        )
    )
    assert "S11" in ENGINE.plan(record, start=START).assessment.rule_ids


def test_S7_code_only_medication_the_tables_do_not_know_is_named_not_checked() -> None:
    plan = ENGINE.plan(
        resources_of(golden_bundle("med-unrecognised-code-only-not-checked")), start=START
    )
    assert plan.assessment.facts.unchecked_medications == (
        ("MedicationStatement/b12gp-113-medstmt-9", f"unrecognised code {RX}|846934"),
        (
            "MedicationRequest/b12gp-113-medreq-9",
            "medication Medication/b12gp-113-med-absent is not in the record",
        ),
    )


def test_S7_named_medications_that_are_not_b12_are_not_listed() -> None:
    """A medication with a name (display or text) was read by that name: not B12, not listed."""
    record = _vegan_record()
    record += [
        _statement(
            {"medicationCodeableConcept": {"coding": [{"system": RX, "code": "314076"}]}},
            id="stmt-code-only",
        ),
        _statement(
            {
                "medicationCodeableConcept": {
                    "coding": [{"system": RX, "code": "314076", "display": "lisinopril 10 MG"}]
                }
            },
            id="stmt-named",
        ),
        _statement({"medicationCodeableConcept": {"text": "Atorvastatin 20 mg"}}, id="stmt-text"),
        _statement({"medicationCodeableConcept": {}}, id="stmt-nothing"),
    ]
    facts = ENGINE.plan(record, start=START).assessment.facts
    assert facts.unchecked_medications == (
        ("MedicationStatement/stmt-code-only", f"unrecognised code {RX}|314076"),
        ("MedicationStatement/stmt-nothing", "no medication code or name"),
    )


def test_S7_inactive_medications_are_not_listed() -> None:
    record = _vegan_record()
    record.append(
        _statement(
            {"medicationCodeableConcept": {"coding": [{"system": RX, "code": "846934"}]}},
            status="completed",
        )
    )
    assert ENGINE.plan(record, start=START).assessment.facts.unchecked_medications == ()
