"""`FactExtractor.relevant`: a large record cut down to what the rules read gives the same Facts.

Large hook requests are answered from this cut-down record (cds_service.hooks.large_bodies), so
any resource it drops that `extract` would have read is a silent change of the answer.
"""

from __future__ import annotations

import copy
import random
from datetime import date
from typing import Any

import pytest
from records import Record
from support import golden_bundle, golden_slugs, resources_of

from cds_service.clinical.extract import FactExtractor, InvalidResourceError
from cds_service.clinical.facts import Facts
from cds_service.protocol import default_protocol

EXTRACTOR = FactExtractor(default_protocol())
TODAY = date(2026, 12, 1)
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"


def comparable(facts: Facts) -> dict[str, Any]:
    """Facts as plain values; the results as each rule reads them (or the error it would meet)."""
    out = {f: getattr(facts, f) for f in facts.__dataclass_fields__ if f != "results"}
    read: dict[str, Any] = {}
    for analyte in facts.results:
        try:
            read[analyte] = facts.results[analyte]
        except InvalidResourceError as exc:
            read[analyte] = ("invalid", exc.reference)
    out["results"] = read
    out["shown_unusable"] = [r.reference for r in facts.unusable]
    return out


def assert_same_facts(resources: list[dict[str, Any]], today: date = TODAY) -> list[Any]:
    kept = EXTRACTOR.relevant(resources, today=today)
    full = comparable(EXTRACTOR.extract(resources, today=today))
    cut = comparable(EXTRACTOR.extract(kept, today=today))
    assert cut == full
    return kept


@pytest.mark.parametrize("slug", golden_slugs())
def test_every_golden_record_gives_the_same_facts_cut_down(slug: str) -> None:
    resources = resources_of(golden_bundle(slug))
    assert_same_facts(resources)
    assert_same_facts(resources[::-1])


def history(seed: int) -> list[dict[str, Any]]:
    """Results of several analytes over years, some unusable or dated after today, shuffled."""
    rng = random.Random(seed)
    record = Record().condition(ICD10, "D51.0", "Vitamin B12 deficiency anaemia")
    for i in range(300):
        when = f"{rng.randint(2018, 2027)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        kind = rng.choice(["b12", "hb", "mma", "folate"])
        if kind == "b12":
            record.b12(rng.uniform(60, 600), when=when)
        elif kind == "hb":
            record.lab("718-7", rng.uniform(7, 17), "g/dL", when=when)
        elif kind == "mma":
            record.lab("13964-2", rng.uniform(0.1, 1.2), "umol/L", when=when)
        else:
            record.lab("2284-8", rng.uniform(1, 20), "ng/mL", when=when)
        last = record.resources[-1]
        if i % 17 == 0:
            last["valueQuantity"]["value"] = "not a number"  # unusable: set aside, named
        elif i % 23 == 0:
            del last["valueQuantity"]  # no value
        elif i % 29 == 0:
            last["status"] = "cancelled"  # never read
    resources = list(record.resources)
    rng.shuffle(resources)
    return resources


@pytest.mark.parametrize("seed", range(8))
def test_a_long_shuffled_history_gives_the_same_facts_and_is_cut_down(seed: int) -> None:
    resources = history(seed)
    kept = assert_same_facts(resources)
    assert len(kept) < len(resources) / 4


def test_results_of_the_same_day_keep_their_order() -> None:
    record = Record()
    for value in (90, 500, 300):
        record.b12(value, when="2026-10-01")
    assert_same_facts(record.resources)


def test_results_that_tie_with_the_deciding_one_are_kept() -> None:
    """A date-only result ties with any result of its day (D10), wherever its time sorts."""
    record = Record().b12(95, when="2026-11-10T09:00:00Z").b12(120, when="2026-06-01")
    record.b12(410, when="2026-11-10").b12(300, when="2026-11-10T02:00:00+05:00")
    kept = assert_same_facts(record.resources)
    assert [r["id"] for r in kept] == ["p1", "obs-1", "obs-3"]
    facts = EXTRACTOR.extract(kept, today=TODAY)
    assert [r.reference for r in facts.conflicting] == ["Observation/obs-1", "Observation/obs-3"]


def test_copies_of_a_tied_value_are_read_once() -> None:
    record = Record()
    for value in (95, 95, 410, 95):
        record.b12(value, when="2026-11-10")
    kept = assert_same_facts(record.resources)
    assert [r["id"] for r in kept] == ["p1", "obs-1", "obs-3"]
    facts = EXTRACTOR.extract(kept, today=TODAY)
    assert [r.shown for r in facts.conflicting] == ["95 pmol/L", "410 pmol/L"]


def test_an_invalid_deciding_result_is_kept_so_it_is_still_refused() -> None:
    resources = history(1)
    b12 = next(
        r for r in resources if r.get("code", {}).get("coding", [{}])[0].get("code") == "14685-2"
    )
    newest = copy.deepcopy(b12)
    newest["id"] = "newest-b12"
    newest["effectiveDateTime"] = "2026-11-30"
    newest["valueQuantity"] = {"value": 120, "unit": "pmol/L"}
    newest["issued"] = "yesterday"  # a usable value in an invalid resource
    kept = assert_same_facts([*resources, newest])
    assert newest in kept


def test_what_the_rules_cannot_read_is_dropped() -> None:
    record = Record().b12(120).condition(ICD10, "D51.0", "Vitamin B12 deficiency anaemia")
    unknown = copy.deepcopy(record.resources[-1])
    unknown["id"] = "other-condition"
    unknown["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]}
    unread_lab = copy.deepcopy(record.resources[1])
    unread_lab["id"] = "sodium"
    unread_lab["code"] = {"coding": [{"system": "http://loinc.org", "code": "2951-2"}]}
    resources = [*record.resources, unknown, unread_lab, {"resourceType": "Basic", "id": "b"}]
    kept = assert_same_facts(resources)
    assert [r["id"] for r in kept] == [r["id"] for r in record.resources]
