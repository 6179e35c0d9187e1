"""The emitted MedicationRequest series: valid FHIR R4, and shaped as protocol section 5 says."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from records import ICD, Record
from support import assert_valid_fhir, golden_bundle, golden_expected, golden_slugs, resources_of

from cds_service.engine import Engine

ENGINE = Engine.build()
START = date(2026, 12, 1)


def series_for(slug: str) -> dict[str, list[dict[str, Any]]]:
    expected = golden_expected(slug)
    plan = ENGINE.plan(
        resources_of(golden_bundle(slug)),
        start=date.fromisoformat(expected["start"]),
        profile=expected["profile"],
    )
    return ENGINE.medication_requests(
        plan, requester="Practitioner/dr-1", encounter="Encounter/enc-1"
    )


SCHEDULED = [s for s in golden_slugs() if golden_expected(s)["regimen"]]


@pytest.mark.parametrize("slug", SCHEDULED)
def test_every_emitted_resource_validates(slug: str) -> None:
    assert series_for(slug), "a patient with a regimen gets at least one series"
    for series in series_for(slug).values():
        for resource in series:
            assert_valid_fhir(resource)


@pytest.mark.parametrize("slug", SCHEDULED)
def test_series_shape(slug: str) -> None:
    assert series_for(slug), "a patient with a regimen gets at least one series"
    for series in series_for(slug).values():
        groups = {mr["groupIdentifier"]["value"] for mr in series}
        assert len(groups) == 1
        previous_end: date | None = None
        for i, mr in enumerate(series):
            assert (mr["status"], mr["intent"]) == ("draft", "proposal")
            assert mr["subject"]["reference"].startswith("Patient/")
            assert mr["requester"] == {"reference": "Practitioner/dr-1"}
            assert mr["encounter"] == {"reference": "Encounter/enc-1"}
            assert mr["reasonCode"]
            dosage = mr["dosageInstruction"][0]
            assert dosage["text"]
            dose = dosage["doseAndRate"][0]["doseQuantity"]
            assert (dose["system"], dose["code"]) == ("http://unitsofmeasure.org", "ug")
            assert dosage["route"]["coding"][0]["code"] != "47625008"
            bounds = dosage["timing"]["repeat"]["boundsPeriod"]
            start = date.fromisoformat(bounds["start"])
            if previous_end is not None:
                assert start == previous_end + timedelta(days=1)
            previous_end = date.fromisoformat(bounds["end"]) if "end" in bounds else None
            course = mr["courseOfTherapyType"]["coding"][0]["code"]
            last = i == len(series) - 1
            assert course == ("continuous" if last else "acute")


def test_conditional_phase_carries_a_note_and_counted_phases_a_count() -> None:
    plan = ENGINE.plan(Record().b12(100).condition(ICD, "D51.0").resources, start=START)
    assert plan.recommended
    series = ENGINE.medication_requests(plan)[plan.recommended.regimen_id]
    notes = [" ".join(n["text"] for n in mr["note"]) for mr in series]
    assert "reticulocyte" in notes[1]
    repeats = [mr["dosageInstruction"][0]["timing"]["repeat"] for mr in series]
    assert [r.get("count") for r in repeats] == [7, 7, None, None]
    assert repeats[2]["periodMax"] == 4
    assert "end" not in repeats[3]["boundsPeriod"]
    assert series[0]["reasonCode"][0]["coding"][0]["code"] == "84027009"


def test_reason_code_names_the_malabsorption_cause_and_the_deficiency() -> None:
    record = Record().b12(100).procedure("443906008", "Roux-en-Y gastric bypass")
    plan = ENGINE.plan(record.resources, start=START)
    assert plan.recommended
    mr = ENGINE.medication_requests(plan)[plan.recommended.regimen_id][0]
    codes = [c["coding"][0]["code"] for c in mr["reasonCode"]]
    assert codes == ["443906008", "190634004"]


def test_same_input_gives_the_same_series() -> None:
    resources = Record().b12(100).resources
    first = ENGINE.medication_requests(ENGINE.plan(resources, start=START))
    second = ENGINE.medication_requests(ENGINE.plan(resources, start=START))
    assert first == second
