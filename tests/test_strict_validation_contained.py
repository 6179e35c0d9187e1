"""Contained resources: the start-up validator leaves them to one validator per type, compiled
on first use (memory), and must still give the verdicts and paths of the whole strict schema."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import jsonschema_rs
import orjson
from support import golden_bundle, golden_slugs, resources_of

from cds_service.clinical.extract import VALIDATED_TYPES
from cds_service.fhir.validation import SCHEMA_PATH, ResourceValidator, element_path

WHOLE = jsonschema_rs.Draft7Validator(orjson.loads(SCHEMA_PATH.read_bytes()))
VALIDATOR = ResourceValidator()


def whole_paths(resource: dict[str, Any]) -> list[str]:
    return sorted({element_path(e.instance_path) for e in WHOLE.iter_errors(resource)})


MEDICATION = {
    "resourceType": "Medication",
    "id": "med1",
    "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1"}]},
    "status": "active",
}
CONTAINED: list[Any] = [
    MEDICATION,
    {**MEDICATION, "status": "sometimes"},
    {**MEDICATION, "status": 5, "code": "x"},
    {**MEDICATION, "unknownElement": 1},
    {"resourceType": "NoSuchType", "id": "x"},
    {"resourceType": 7},
    {"id": "no-type"},
    "not an object",
    None,
    {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
    {"resourceType": "Observation", "code": {"text": "x"}},  # status required
    {"resourceType": "Patient", "birthDate": "2020-02-30"},
    {**MEDICATION, "contained": [{**MEDICATION, "status": "bad"}]},
]


def test_contained_resources_get_the_whole_schemas_verdicts_and_paths() -> None:
    rng = random.Random(19)
    resources = [r for slug in golden_slugs() for r in resources_of(golden_bundle(slug))]
    resources = [r for r in resources if r["resourceType"] in VALIDATED_TYPES]
    checked = 0
    for resource in rng.sample(resources, min(60, len(resources))):
        for items in ([c] for c in CONTAINED):
            mutant = copy.deepcopy(resource)
            mutant["contained"] = copy.deepcopy(items)
            assert VALIDATOR.problems(mutant) == whole_paths(mutant), json.dumps(items)
            checked += 1
        mutant = copy.deepcopy(resource)
        mutant["contained"] = copy.deepcopy(CONTAINED)
        assert VALIDATOR.problems(mutant) == whole_paths(mutant)
        mutant["contained"] = {"not": "a list"}
        assert VALIDATOR.problems(mutant) == whole_paths(mutant)
    assert checked > 500


def test_an_invalid_contained_resource_is_named_by_its_path() -> None:
    resources = [r for r in resources_of(golden_bundle(golden_slugs()[0]))]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    mutant = {**patient, "contained": [MEDICATION, {**MEDICATION, "status": 5}]}
    assert VALIDATOR.problems(mutant) == ["contained[1].status"]
    assert VALIDATOR.problems({**patient, "contained": [MEDICATION]}) == []
