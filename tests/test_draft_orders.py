"""Draft-order checks in the clinical core (S2, S7, R8): decided on the plan, with rule ids."""

from __future__ import annotations

from datetime import date

from records import Record

from cds_service.clinical.draft_orders import OFF_PROTOCOL, DraftReviewer
from cds_service.clinical.regimen import Plan
from cds_service.engine import Engine

ENGINE = Engine.build()
REVIEWER = DraftReviewer(ENGINE.protocol)
START = date(2026, 12, 1)
IV = ("47625008", "Intravenous route")
IM = ("78421000", "Intramuscular route")
SUBLINGUAL = ("37839007", "Sublingual route")


def plan(record: Record) -> Plan:
    return ENGINE.plan(record.resources, start=START)


def drafts(record: Record) -> set[str]:
    return {
        f"{r['resourceType']}/{r['id']}" for r in record.resources if r.get("status") == "draft"
    }


def review(record: Record):  # type: ignore[no-untyped-def]
    return REVIEWER.review(plan(record), drafts(record))


def test_R8_b12_draft_off_the_protocol_dose_is_flagged() -> None:
    off = Record().b12(110).medication("cyanocobalamin injection", "draft", IM, dose_ug=50)
    found = review(off)
    assert [r.label for r in found.off_protocol] and found.rule_ids == (OFF_PROTOCOL,)
    on = Record().b12(110).medication("cyanocobalamin injection", "draft", IM, dose_ug=1000)
    assert review(on).off_protocol == () and review(on).rule_ids == ()


def test_R8_not_judged_without_a_confirmed_deficiency_or_with_current_therapy() -> None:
    unknown = Record().medication("cyanocobalamin injection", "draft", IM, dose_ug=50)
    assert review(unknown).off_protocol == ()
    on_therapy = (
        Record()
        .b12(110)
        .medication("cyanocobalamin 1000 mcg/mL injection")
        .medication("cyanocobalamin injection", "draft", IM, dose_ug=50)
    )
    found = review(on_therapy)
    assert found.off_protocol == () and len(found.duplicates) == 1  # S7 handles it


def test_S2_intravenous_draft_is_singled_out_for_replacement() -> None:
    found = review(Record().b12(110).medication("cyanocobalamin injection", "draft", IV))
    assert len(found.intravenous) == 1 and found.off_protocol == () and found.relevant


def test_S7_duplicate_of_current_therapy() -> None:
    record = Record().b12(110).medication("hydroxocobalamin 1 mg/mL injection")
    record.medication("cyanocobalamin injection", "draft", IM)
    found = review(record)
    assert len(found.duplicates) == 1 and found.intravenous == ()


def test_only_the_checked_drafts_are_reviewed() -> None:
    record = Record().b12(110).medication("cyanocobalamin injection", "draft", IV)
    found = REVIEWER.review(plan(record), {"MedicationRequest/not-this-one"})
    assert found.b12 == () and not found.relevant


def test_relevance_of_drafts_to_b12() -> None:
    assert review(Record().b12(110).medication("folic acid 1 mg tablet", "draft")).relevant
    assert review(Record().b12(110).draft_test("14685-2")).relevant
    assert not review(Record().b12(110).medication("atorvastatin 20 mg tablet", "draft")).relevant


def test_R7_a_sublingual_draft_for_a_dietary_deficiency_is_on_the_protocol() -> None:
    """R7 offers sublingual beside oral, so a sublingual draft at that dose is not R8."""
    vegan = Record().b12(110).condition("http://snomed.info/sct", "281015005")
    vegan.medication("cyanocobalamin 1000 mcg sublingual tablet", "draft", SUBLINGUAL, dose_ug=1000)
    found = review(vegan)
    assert found.b12 and found.off_protocol == ()
    # In malabsorption sublingual is not enough: S11 replaces the draft with the IM series.
    coeliac = Record().b12(110).condition("http://hl7.org/fhir/sid/icd-10-cm", "K90.0")
    coeliac.medication(
        "cyanocobalamin 1000 mcg sublingual tablet", "draft", SUBLINGUAL, dose_ug=1000
    )
    assert [r.label for r in review(coeliac).replaced["S11"]] == [found.b12[0].label]
