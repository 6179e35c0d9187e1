"""Hook answers from validated templates: the same bytes as plain dicts, and valid FHIR.

The hook route serialises MedicationRequests whose fixed parts are JSON text made once at
start-up (orjson.Fragment) and whose dated parts are memoised per regimen and start day
(cds_service.fhir.medication_requests, `templated`); the card texts of a schedule are memoised
too (cds_service.hooks.cards.parts). Every golden request, on several start dates, must give
byte for byte the answer of the plain path, and every resource in the answer, read back from
those bytes, must be valid for fhir.resources and for the official R4 JSON schema.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Iterator
from datetime import date
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from support import ROOT, assert_valid_fhir, golden_expected

from cds_service.engine import Engine
from cds_service.hooks.cards import CardBuilder
from cds_service.hooks.models import parse_hook_request
from cds_service.hooks.prefetch import resolve
from cds_service.hooks.router import answer
from cds_service.hooks.services import SERVICES

REQUESTS = ROOT / "fhir_examples" / "requests"
#: Month ends, a leap day, a year end: the dated parts are memoised per start day.
START_DATES = (
    date(2026, 12, 1),
    date(2026, 12, 31),
    date(2027, 1, 31),
    date(2027, 2, 28),
    date(2028, 2, 29),
)
SERVICE_OF_HOOK = {s.hook: s for s in SERVICES.values()}


def golden_requests() -> list[Path]:
    return sorted(p for p in REQUESTS.glob("*.json") if p.name.count(".") == 2)


@cache
def state(profile: str) -> Any:
    """What `answer` reads of the service's state: the engine, the profile, the cards."""
    engine = Engine.build()
    return SimpleNamespace(
        engine=engine, settings=SimpleNamespace(profile=profile), cards=CardBuilder(engine.protocol)
    )


def counter() -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(numbers):012d}"


def answer_bytes(path: Path, day: date, *, templated: bool) -> bytes:
    slug, hook = path.name.split(".")[:2]
    body = json.loads(path.read_text())
    request = parse_hook_request(body, hook)
    record = asyncio.run(resolve(request, None))
    _, cards = answer(
        state(golden_expected(slug)["profile"]),
        SERVICE_OF_HOOK[hook],
        request,
        record,
        day,
        "https://cds.example.org",
        templated=templated,
        new_id=counter(),  # the same uuids on both paths: no masking needed
    )
    return orjson.dumps({"cards": cards})


def created(cards: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for card in cards:
        for suggestion in card.get("suggestions", ()):
            for action in suggestion.get("actions", ()):
                if "resource" in action:
                    yield action["resource"]


@pytest.mark.parametrize("path", golden_requests(), ids=lambda p: p.name[: -len(".json")])
def test_templated_answers_are_the_plain_answers_byte_for_byte(path: Path) -> None:
    for day in START_DATES:
        plain = answer_bytes(path, day, templated=False)
        assert answer_bytes(path, day, templated=True) == plain, day
        # Memoised parts give the same bytes on the next call too.
        assert answer_bytes(path, day, templated=True) == plain, day


def test_every_resource_of_the_templated_answers_is_valid_fhir() -> None:
    """Read back from the bytes sent; the same resource (ids aside) is checked once."""
    checked: set[bytes] = set()
    series = 0
    for path, day in itertools.product(golden_requests(), START_DATES[:2]):
        cards = orjson.loads(answer_bytes(path, day, templated=True))["cards"]
        for resource in created(cards):
            series += resource["resourceType"] == "MedicationRequest"
            shape = json.dumps({k: v for k, v in resource.items() if k != "id"}, sort_keys=True)
            key = shape.encode().replace(path.name.split(".")[0].encode(), b"")
            if key in checked:
                continue
            checked.add(key)
            assert_valid_fhir(resource)
    assert series > 100  # the golden requests propose many series: the check is not empty


def test_the_hook_path_uses_the_templates() -> None:
    """The fixed parts are JSON text made at start-up, not dicts built per call."""
    body = json.loads((REQUESTS / "t6-unspecified-low-b12.patient-view.json").read_text())
    engine = state("standard").engine
    request = parse_hook_request(body, "patient-view")
    record = asyncio.run(resolve(request, None))
    plan = engine.plan(record.resources, start=START_DATES[0], patient_id=record.patient_id)
    series = engine.medication_requests(plan, templated=True)
    first = next(iter(series.values()))[0]
    assert isinstance(first["medicationCodeableConcept"], orjson.Fragment)
    assert isinstance(first["dosageInstruction"][0]["timing"], orjson.Fragment)
    assert isinstance(first["dosageInstruction"][0]["text"], str)  # the cards read it
    plain = engine.medication_requests(plan)
    assert orjson.dumps(series) == orjson.dumps(plain)
    assert isinstance(next(iter(plain.values()))[0]["medicationCodeableConcept"], dict)
