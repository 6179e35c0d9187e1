"""The compiled strict R4 validator against fhir.resources, its oracle.

Every golden resource is accepted by both; seeded mutations of real resources must never be
accepted by the strict validator when fhir.resources refuses them. `CDS_SLOW_TESTS=1` runs ten
times as many mutations.
"""

from __future__ import annotations

import copy
import json
import os
import random
import time
from collections import Counter
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from support import PATIENTS, golden_bundle, golden_slugs, resources_of

from cds_service.clinical.extract import VALIDATED_TYPES
from cds_service.fhir import strict_schema
from cds_service.fhir.validation import ResourceValidator, resource_validator

VALIDATOR = resource_validator()
SEED = 20261201
MUTATIONS = 200_000 if os.environ.get("CDS_SLOW_TESTS") == "1" else 20_000

#: Replacement values: wrong JSON types, R4 lexical edge cases, out-of-range numbers, nulls.
VALUES: tuple[Any, ...] = (
    None,
    "",
    " ",
    "x",
    "12",
    "1.5",
    12,
    0,
    -1,
    1.5,
    2**31,
    -(2**31) - 1,
    True,
    "true",
    {},
    [],
    [None],
    [{}],
    {"extension": []},
    {"url": "http://example.org/x"},
    "2023-02-29",
    "2024-02-29",
    "2023-02-30",
    "2023-04-31",
    "2023-13",
    "0000",
    "2026-11-20T10:00:00",
    "2026-11-20T10:00:00Z",
    "2026-11-20T10:00:60Z",
    "2026-11-20T24:00:00Z",
    "2026-11-20T10:00Z",
    "10:00:00",
    "abc def",
    " lead",
    "trail ",
    "two  spaces",
    "tab\tinside",
    "x" * 65,
    "urn:uuid:c757873d-ec9a-4326-a141-556f43239520",
    "urn:uuid:c757873d-ec9a-1326-a141-556f43239520",
    "not base64!",
    "aGVsbG8=",
    "final",
    "Patient/p1",
    "http://example.org",
    "<div xmlns='http://www.w3.org/1999/xhtml'>x</div>",
)

CHOICE_SUFFIXES = ("String", "Quantity", "DateTime", "Boolean", "Integer", "Period", "Reference")


def golden_resources() -> list[dict[str, Any]]:
    """Every resource of the golden patients."""
    return [r for slug in golden_slugs() for r in resources_of(golden_bundle(slug))]


def quantity_result() -> dict[str, Any]:
    """A copy of a golden lab result with a valueQuantity."""
    return copy.deepcopy(
        next(
            r
            for r in golden_resources()
            if r["resourceType"] == "Observation" and "valueQuantity" in r
        )
    )


def fhir_resources_rejects(resource: Any) -> bool:
    try:
        model = get_fhir_model_class(str(resource.get("resourceType")))
    except (KeyError, ValueError, LookupError):
        return True
    try:
        model.model_validate(resource)
    except Exception:  # noqa: BLE001 - fhir.resources also fails with AttributeError
        return True
    return False


def _slots(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every key and list position in a JSON value."""
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            out.append((*path, key))
            out.extend(_slots(child, (*path, key)))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out.append((*path, i))
            out.extend(_slots(child, (*path, i)))
    return out


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


def _tweak(value: Any, rng: random.Random) -> Any:
    """A near miss of the same kind as the value."""
    if isinstance(value, bool):
        return rng.choice(["true", 1, None, not value])
    if isinstance(value, int | float):
        return rng.choice([str(value), value + 0.5, -value, value * 2**31, None])
    if isinstance(value, str):
        return rng.choice([value + " ", " " + value, value[:-1], value + "-00", value.upper()])
    if isinstance(value, list):
        return rng.choice([[], [*value, None], value + value, value[0] if value else None])
    if isinstance(value, dict):
        return rng.choice([[value], {}, {**value, "unknownElement": 1}, None])
    return None


def mutate(resource: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], str]:
    """A copy with one to three seeded changes, and what they were (paths, no values)."""
    out = copy.deepcopy(resource)
    notes = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        slots = _slots(out)
        if not slots:
            break
        path = rng.choice(slots)
        parent, key = _at(out, path[:-1]), path[-1]
        op = rng.randrange(8)
        if op == 0:
            # Copies (here and below): a shared VALUES object changed by a later mutation could
            # come to hold itself.
            parent[key] = copy.deepcopy(rng.choice(VALUES))
        elif op == 1:
            parent[key] = _tweak(parent[key], rng)
        elif op == 2:
            del parent[key]
        elif op == 3 and isinstance(key, str):
            parent["_" + key.lstrip("_")] = parent.pop(key)
        elif op == 4 and isinstance(key, str):
            stem = next((key[: -len(s)] for s in CHOICE_SUFFIXES if key.endswith(s)), key)
            parent[stem + rng.choice(CHOICE_SUFFIXES)] = copy.deepcopy(parent[key])
        elif op == 5 and isinstance(parent, dict):
            parent[rng.choice(("unknown", "fhir_comments", "value", "extension"))] = copy.deepcopy(
                rng.choice(VALUES)
            )
        elif op == 6:
            parent[key] = [parent[key]]
        else:
            parent[key] = copy.deepcopy(rng.choice(VALUES))
        notes.append(f"op{op}@{'/'.join(map(str, path))}")
    return out, " ".join(notes)


def _verdict(rejects: bool) -> str:
    return "rejects" if rejects else "accepts"


def test_every_golden_resource_is_valid_for_both_validators() -> None:
    resources = golden_resources()
    assert len(resources) > 100
    refused = [
        (r.get("resourceType"), r.get("id"), VALIDATOR.problems(r))
        for r in resources
        if VALIDATOR.problems(r) or fhir_resources_rejects(r)
    ]
    assert refused == []


def test_seeded_mutations_refused_by_fhir_resources_are_refused_by_the_strict_validator() -> None:
    rng = random.Random(SEED)
    seeds = [r for r in golden_resources() if r.get("resourceType") in VALIDATED_TYPES]
    verdicts: Counter[str] = Counter()
    missed: list[str] = []
    started = time.monotonic()
    for _ in range(MUTATIONS):
        seed = rng.choice(seeds)
        mutated, what = mutate(seed, rng)
        oracle, strict = fhir_resources_rejects(mutated), bool(VALIDATOR.problems(mutated))
        verdicts[f"oracle {_verdict(oracle)}, strict {_verdict(strict)}"] += 1
        if oracle and not strict:
            missed.append(f"{seed['resourceType']}/{seed.get('id')}: {what}")
    elapsed = time.monotonic() - started
    # The mutations must exercise both sides, or the test proves nothing.
    assert verdicts["oracle rejects, strict rejects"] > MUTATIONS // 4, verdicts
    assert verdicts["oracle accepts, strict accepts"] > MUTATIONS // 20, verdicts
    assert missed == [], f"{len(missed)} accepted although fhir.resources refuses: {missed[:10]}"
    assert elapsed < 240, f"{MUTATIONS} mutations took {elapsed:.0f} s"


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda r: r["valueQuantity"].update(value="12"), "valueQuantity.value"),
        (lambda r: r["valueQuantity"].update(value=None), "valueQuantity.value"),
        (lambda r: r.update(effectiveDateTime="2026-11-20T10:00:00"), "effectiveDateTime"),
        (lambda r: r.update(effectiveDateTime="2023-02-29"), "effectiveDateTime"),
        (lambda r: r.update(valueString="also"), "(resource)"),
        (lambda r: r.pop("code"), "(resource)"),
        (lambda r: r["code"]["coding"].append("a string"), "code.coding[1]"),
    ],
)
def test_stricter_than_r4_coercion_and_errors_name_the_element_not_the_value(
    change: Any, path: str
) -> None:
    obs = quantity_result()
    secret_values = {json.dumps(v) for v in obs.values()}
    change(obs)
    problems = VALIDATOR.problems(obs)
    assert problems == [path]
    assert not any(v.strip('"') in path for v in secret_values if len(v) > 6)


def test_a_required_primitive_may_be_replaced_by_its_extension_twin() -> None:
    obs = quantity_result()
    del obs["status"]
    assert VALIDATOR.problems(obs)
    obs["_status"] = {"extension": [{"url": "http://example.org/why", "valueString": "lost"}]}
    assert VALIDATOR.problems(obs) == []
    assert not fhir_resources_rejects(obs)
    obs["_status"] = {"extension": []}
    assert VALIDATOR.problems(obs)


def test_records_as_read_only_mappings_are_validated_the_same() -> None:
    from types import MappingProxyType

    obs = quantity_result()
    proxied = MappingProxyType({**obs, "code": MappingProxyType(dict(obs["code"]))})
    assert VALIDATOR.problems(proxied) == []
    broken = MappingProxyType({**obs, "valueQuantity": {"value": "12"}})
    assert VALIDATOR.problems(broken) == ["valueQuantity.value"]


def test_the_shipped_schema_is_the_generators_output() -> None:
    shipped = strict_schema.STRICT_SCHEMA.read_text(encoding="utf-8")
    assert shipped == strict_schema.render(strict_schema.build()), (
        "run: python -m cds_service.fhir.strict_schema"
    )


def test_the_validator_is_compiled_once_per_process() -> None:
    assert resource_validator() is VALIDATOR
    assert isinstance(VALIDATOR, ResourceValidator)
    assert PATIENTS.is_dir()
