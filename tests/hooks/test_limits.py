"""Hard limits through HTTP: nesting depth, documented caps, the fallback fetch's memory budget,
and a large request that does not hold the event loop."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from typing import Any

import pytest
from fhirserver import FhirTestServer
from support import isolated_settings

from cds_service.app import create_app
from cds_service.fetch import Allowlist
from cds_service.fetch.budget import MemoryBudget, _Usage
from cds_service.json_limits import MAX_DEPTH, too_deep
from cds_service.settings import DEFAULT_MAX_BODY_BYTES

from .fetching import PV, fetching_app, post_fetching, without_prefetch
from .helpers import START, client, golden_request

pytestmark = pytest.mark.anyio
APPLY = "/fhir/PlanDefinition/b12-deficiency-standard/$apply"


def nested_extension(levels: int) -> list[dict[str, Any]]:
    inner: list[dict[str, Any]] = [{"url": "https://example.org/x", "valueString": "x"}]
    for _ in range(levels):
        inner = [{"url": "https://example.org/x", "extension": inner}]
    return inner


def _b12(body: dict[str, Any]) -> dict[str, Any]:
    return next(
        e["resource"]
        for e in body["prefetch"]["observations"]["entry"]
        if "14685-2" in json.dumps(e["resource"]["code"])
    )


# --- 5. depth --------------------------------------------------------------------------------


async def test_120_levels_of_extension_in_a_hook_call_is_400_not_500() -> None:
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    _b12(body)["extension"] = nested_extension(120)
    async with client() as c:
        r = await c.post(PV, json=body)
    assert r.status_code == 400, r.text
    assert f"deeper than {MAX_DEPTH} levels" in r.json()["error"]["message"]


async def test_deep_nesting_in_a_draft_order_is_400() -> None:
    body = golden_request("s2-draft-iv-cyanocobalamin", "order-sign")
    body["context"]["draftOrders"]["entry"][0]["resource"]["extension"] = nested_extension(120)
    async with client() as c:
        r = await c.post("/cds-services/b12-order-sign", json=body)
    assert r.status_code == 400, r.text


async def test_120_levels_of_extension_in_apply_data_is_400() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "id": "p1"}}],
    }
    bundle["entry"][0]["resource"]["extension"] = nested_extension(120)
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subject", "valueString": "Patient/p1"},
            {"name": "data", "resource": bundle},
        ],
    }
    async with client() as c:
        r = await c.post(APPLY, json=params)
    assert r.status_code == 400, r.text
    assert "deeper than" in r.json()["issue"][0]["diagnostics"]


async def test_ordinary_nesting_within_the_limit_is_answered() -> None:
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    _b12(body)["extension"] = nested_extension(20)
    async with client() as c:
        r = await c.post(PV, json=body)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("depth", [1, 2, 63, 64, 65, 300])
def test_the_depth_check_counts_levels_outside_strings_only(depth: int) -> None:
    value: Any = {}
    for i in range(depth - 1):
        value = {"k": value, "s": '"[{\\"' * (i % 3)} if i % 2 else [value, "]]}}"]
    raw = json.dumps(value).encode()
    assert too_deep(raw) == (depth > MAX_DEPTH)


# --- 8. caps ---------------------------------------------------------------------------------


async def test_more_draft_orders_than_the_cap_is_413_naming_it() -> None:
    body = golden_request("s2-draft-iv-cyanocobalamin", "order-sign")
    entry = body["context"]["draftOrders"]["entry"][0]
    body["context"]["draftOrders"]["entry"] = [copy.deepcopy(entry) for _ in range(201)]
    async with client() as c:
        r = await c.post("/cds-services/b12-order-sign", json=body)
    assert r.status_code == 413, r.text
    assert "CDS_MAX_DRAFT_ORDERS" in r.json()["error"]["message"]


def capped_app(**caps: int) -> Any:
    return create_app(isolated_settings(auth=False, **caps), clock=lambda: START)


async def test_more_entries_in_one_key_than_the_cap_is_413() -> None:
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    entries = body["prefetch"]["observations"]["entry"]
    async with client(capped_app(max_entries_per_key=len(entries) - 1), signed=False) as c:
        r = await c.post(PV, json=body)
    assert r.status_code == 413
    assert "prefetch.observations" in r.json()["error"]["message"]


async def test_more_resources_in_all_than_the_cap_is_413() -> None:
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    async with client(capped_app(max_resources=3), signed=False) as c:
        r = await c.post(PV, json=body)
        assert r.status_code == 413
        assert "CDS_MAX_RESOURCES" in r.json()["error"]["message"]
        params = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "subject", "valueString": "Patient/b12gp-017"},
                {
                    "name": "data",
                    "resource": {
                        "resourceType": "Bundle",
                        "type": "collection",
                        "entry": [{"resource": {"resourceType": "Basic"}}] * 4,
                    },
                },
            ],
        }
        r = await c.post(APPLY, json=params)
        assert r.status_code == 413


def haemoglobin_filled(max_bytes: int) -> bytes:
    """A real patient-view request with full-size haemoglobin results up to `max_bytes`."""
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    own = body["prefetch"]["observations"]["entry"]
    hb = next(e for e in own if "718-7" in json.dumps(e))
    size = len(json.dumps(hb)) + 2
    filler = []
    for i in range((max_bytes - len(json.dumps(body)) - 4096) // size):
        entry = copy.deepcopy(hb)
        entry["resource"]["id"] = f"hb-{i}"
        filler.append(entry)
    body["prefetch"]["observations"]["entry"] = filler + own
    return json.dumps(body).encode()


async def test_a_large_request_does_not_hold_the_event_loop() -> None:
    """While a request at the body cap is answered, /health is answered first (the cap: a
    smaller one may be answered within the 50 ms once the reading process is up)."""
    raw = haemoglobin_filled(DEFAULT_MAX_BODY_BYTES)
    done: list[str] = []
    async with client() as c:

        async def big() -> None:
            r = await c.post(PV, content=raw, headers={"content-type": "application/json"})
            assert r.status_code == 200
            done.append("big")

        async def health() -> None:
            await asyncio.sleep(0.05)  # the big request is being answered by then
            r = await c.get("/health")
            assert r.status_code == 200
            done.append("health")

        await asyncio.gather(big(), health())
    assert done == ["health", "big"]


async def _cpu_of_a_large_call(app: Any, raw: bytes) -> float:
    """CPU seconds this process (every thread, not child processes) spends answering `raw`."""
    async with client(app, signed=False) as c:
        # The first call starts the reading process; the second is the one measured.
        for _ in range(2):
            began = time.process_time()
            r = await c.post(PV, content=raw, headers={"content-type": "application/json"})
            spent = time.process_time() - began
            assert r.status_code == 200, r.text
    return spent


async def test_the_largest_request_costs_the_serving_process_little_cpu() -> None:
    """What /health can wait for is what the serving process computes while it holds the GIL.

    Measured in CPU time, which the load of the machine does not change: a 5 MB body (the
    body cap, full-size observations) costs the serving process a few milliseconds when it is
    read in another process, and over 100 ms when it is parsed in a thread of its own."""
    raw = haemoglobin_filled(DEFAULT_MAX_BODY_BYTES)
    assert len(raw) > 0.9 * DEFAULT_MAX_BODY_BYTES
    in_process = await _cpu_of_a_large_call(
        create_app(isolated_settings(auth=False, read_processes=0), clock=lambda: START), raw
    )
    offloaded = await _cpu_of_a_large_call(capped_app(), raw)
    assert offloaded < 0.060, f"{offloaded * 1000:.0f} ms of CPU on the event loop's process"
    assert in_process > 2 * offloaded, "the measure does not see the parsing"


# --- 9. memory budget of the fallback fetch ---------------------------------------------------


def fetch_body(server: FhirTestServer) -> dict[str, Any]:
    """The observations come from the FHIR server, the rest from the prefetch."""
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    return without_prefetch(body, server, *(k for k in body["prefetch"] if k != "observations"))


async def test_an_answer_past_the_per_call_budget_is_412_not_an_oom(
    fhir_server: FhirTestServer,
) -> None:
    budget = MemoryBudget(per_call=1024, total=1024 * 1024)
    r = await post_fetching(fetch_body(fhir_server), budget=budget)
    assert r.status_code == 412, r.text
    assert "CDS_FHIR_MAX_BYTES_PER_CALL" in r.json()["error"]["reasons"]["observations"]
    assert budget.used == 0  # given back when the call was answered


async def test_the_process_budget_in_use_by_other_calls_makes_the_key_unavailable(
    fhir_server: FhirTestServer,
) -> None:
    budget = MemoryBudget(per_call=1024 * 1024, total=2 * 1024 * 1024)
    others = [_Usage(), _Usage()]
    for other in others:  # two other calls hold nearly all of it
        budget.reserve(other, 1024 * 1024 - 50)
    r = await post_fetching(fetch_body(fhir_server), budget=budget)
    assert r.status_code == 412
    assert "in use by other calls" in r.json()["error"]["reasons"]["observations"]
    for other in others:
        budget.release(other)
    r = await post_fetching(fetch_body(fhir_server), budget=budget)
    assert r.status_code == 200, r.text
    assert budget.used == 0


class PeakBudget(MemoryBudget):
    """A memory budget that remembers the most it held at once."""

    peak = 0

    def reserve(self, usage: _Usage, size: int) -> None:
        super().reserve(usage, size)
        self.peak = max(self.peak, self.used)


async def test_concurrent_calls_past_the_process_budget_get_412_for_the_key_that_passed_it(
    fhir_server: FhirTestServer,
) -> None:
    """Real calls, not reservations made by hand: room for one call's answers and a half."""
    solo = PeakBudget(per_call=64 * 1024 * 1024, total=64 * 1024 * 1024)
    assert (await post_fetching(fetch_body(fhir_server), budget=solo)).status_code == 200
    one_call = solo.peak
    budget = PeakBudget(per_call=one_call * 3 // 2, total=one_call * 3 // 2)
    # Every observations answer waits half a second, so the three calls read theirs together.
    fhir_server.set_mode("slow", "Observation", seconds=0.5)
    app, fetcher = fetching_app(Allowlist(allow_loopback=True), budget=budget)
    try:
        async with client(app, signed=False) as c:
            responses = await asyncio.gather(
                *(c.post(PV, json=fetch_body(fhir_server)) for _ in range(3))
            )
    finally:
        await fetcher.aclose()
    statuses = sorted(r.status_code for r in responses)
    assert statuses[0] == 200 and statuses[-1] == 412, statuses
    for r in responses:
        if r.status_code == 412:
            error = r.json()["error"]
            assert error["missing"] == ["observations"]
            assert "in use by other calls" in error["reasons"]["observations"]
            assert "CDS_FHIR_MAX_BYTES_TOTAL" in error["message"]
    assert one_call <= budget.peak <= budget.total
    assert budget.used == 0  # every call gave its bytes back
