"""`$apply` bodies over 256 KiB are read in the reading process: same answers, idle event loop.

Through HTTP, against the service as deployed (auth off). The reference for every answer is
the same body read whole on the event loop (the hand-off threshold raised out of the way)."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
from hooks.helpers import START, client
from support import golden_bundle, golden_expected, isolated_settings

from cds_service.app import create_app
from cds_service.plan_operation import body as apply_body
from cds_service.plan_operation.artifacts import plan_definition_id
from cds_service.settings import DEFAULT_MAX_BODY_BYTES
from plan_operation.helpers import parameters, patient_id

pytestmark = pytest.mark.anyio
SLUG = "t6-unspecified-low-b12"
PATH = f"/fhir/PlanDefinition/{plan_definition_id(golden_expected(SLUG)['profile'])}/$apply"
FHIR_JSON = {"content-type": "application/fhir+json"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def filled(max_bytes: int, *, tail: list[dict[str, Any]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """The golden patient's Bundle, its haemoglobin repeated over the years before up to
    `max_bytes`, then `tail`."""
    bundle = golden_bundle(SLUG)
    hb = next(e for e in bundle["entry"] if "718-7" in json.dumps(e["resource"].get("code")))
    size = len(json.dumps(hb)) + 2
    history = []
    for i in range((max_bytes - len(json.dumps(bundle)) - 4096) // size):
        entry = copy.deepcopy(hb)
        entry["resource"]["id"] = f"hb-history-{i}"
        entry["resource"]["effectiveDateTime"] = f"{2019 - i // 365:04d}-{1 + i % 12:02d}-01"
        history.append(entry)
    bundle["entry"] = bundle["entry"] + history + list(tail)
    return parameters(f"Patient/{patient_id(bundle)}", bundle)


def app(**settings: Any) -> Any:
    return create_app(isolated_settings(auth=False, **settings), clock=lambda: START)


async def answered(raw: bytes, **settings: Any) -> tuple[int, Any]:
    async with client(app(**settings), signed=False) as c:
        r = await c.post(PATH, content=raw, headers=FHIR_JSON)
    return r.status_code, r.json()


async def answered_whole(raw: bytes, monkeypatch: pytest.MonkeyPatch, **settings: Any) -> Any:
    """The answer when the body is read on the event loop, as before."""
    with monkeypatch.context() as patch:
        patch.setattr(apply_body, "OFFLOAD_BYTES", 10**12)
        return await answered(raw, **settings)


def other_patients_observation() -> dict[str, Any]:
    bundle = golden_bundle(SLUG)
    entry = copy.deepcopy(
        next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    )
    entry["resource"]["id"] = "someone-else"
    entry["resource"]["subject"] = {"reference": "Patient/someone-else"}
    return entry


def deep() -> dict[str, Any]:
    value: dict[str, Any] = {"url": "http://example.org/x", "valueString": "x"}
    for _ in range(80):
        value = {"url": "http://example.org/x", "extension": [value]}
    return {"resource": {"resourceType": "Basic", "id": "deep", "extension": [value]}}


def large(**kw: Any) -> bytes:
    return json.dumps(filled(1_000_000, **kw)).encode()


CASES = {
    "a long record": (large(), {}),
    "another patient's result at the end": (large(tail=[other_patients_observation()]), {}),
    "not JSON": (large()[:-2], {}),
    "nested too deep": (large(tail=[deep()]), {}),
    "no subject": (
        json.dumps({**filled(1_000_000), "parameter": filled(1_000_000)["parameter"][1:]}).encode(),
        {},
    ),
    "more resources than CDS_MAX_RESOURCES": (large(), {"max_resources": 500}),
}


@pytest.mark.parametrize("case", CASES)
async def test_a_large_body_gets_the_answer_the_whole_body_gets(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, settings = CASES[case]
    assert len(raw) > apply_body.OFFLOAD_BYTES
    status, answer = await answered(raw, **settings)
    assert (status, answer) == await answered_whole(raw, monkeypatch, **settings)
    if case == "a long record":
        assert status == 200 and answer["resourceType"] == "CarePlan"
    else:
        assert status in (400, 413, 422) and answer["resourceType"] == "OperationOutcome"


async def _loop_cpu(raw: bytes, **settings: Any) -> float:
    """CPU seconds the event loop's thread spends on the second of two calls (the first starts
    the reading process)."""
    async with client(app(**settings), signed=False) as c:
        for _ in range(2):
            began = time.thread_time()
            r = await c.post(PATH, content=raw, headers=FHIR_JSON)
            spent = time.thread_time() - began
            assert r.status_code == 200, r.text
    return spent


async def test_the_largest_body_costs_the_event_loop_little_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What /health waits for is what the event loop's thread computes: a 5 MB `data` Bundle
    costs it a few milliseconds when read in the reading process, over 100 ms on the loop."""
    raw = json.dumps(filled(DEFAULT_MAX_BODY_BYTES)).encode()
    assert 0.9 * DEFAULT_MAX_BODY_BYTES < len(raw) <= DEFAULT_MAX_BODY_BYTES
    offloaded = await _loop_cpu(raw)
    with monkeypatch.context() as patch:
        patch.setattr(apply_body, "OFFLOAD_BYTES", 10**12)
        on_loop = await _loop_cpu(raw)
    assert offloaded < 0.060, f"{offloaded * 1000:.0f} ms of CPU on the event loop"
    assert on_loop > 2 * offloaded, "the measure does not see the parsing"
