"""Fallback-fetch search pages over 256 KiB are read in the reading process.

Through HTTP: a patient-view call whose observations come from the loopback FHIR server in
one large page. The reference for every answer is the same call with the page read whole on
the event loop (the hand-off threshold raised out of the way)."""

from __future__ import annotations

import copy
import functools
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fhirserver import FhirTestServer

from cds_service import record_source
from cds_service.fetch import Allowlist
from cds_service.fhir.search_completeness import PARTIAL_OUTCOME
from cds_service.hooks import router
from cds_service.hooks.fetched_pages import FetchedPages, read_page
from cds_service.hooks.prefetch import RecordScope
from cds_service.offload.pool import OFFLOAD_BYTES, process_pool

from .fetching import PV, fetching_app, without_prefetch
from .helpers import START, client, golden_request
from .test_fallback_fetch import apply_from, clinical

pytestmark = pytest.mark.anyio
SLUG = "t6-unspecified-low-b12"
PATIENT = "long-history"


def long_history(results: int, *, stranger_at: int | None = None) -> dict[str, Any]:
    """The golden patient as the FHIR server holds them (under another id), with `results`
    haemoglobin results over the years before; one of them another patient's at
    `stranger_at` (a server that mixes up records)."""
    request = golden_request(SLUG, "patient-view")
    old = request["context"]["patientId"]
    text = json.dumps(request["prefetch"]).replace(old, PATIENT)
    prefetch = json.loads(text)
    resources = [{**prefetch["patient"], "id": PATIENT}]
    for value in prefetch.values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            resources += [e["resource"] for e in value.get("entry", [])]
    hb = next(r for r in resources if "718-7" in json.dumps(r.get("code", {})))
    for i in range(results):
        result = copy.deepcopy(hb)
        result["id"] = f"hb-history-{i}"
        result["effectiveDateTime"] = f"{2019 - i // 365:04d}-{1 + i % 12:02d}-01"
        if i == stranger_at:
            result["subject"] = {"reference": "Patient/someone-else"}
        resources.append(result)
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }


@pytest.fixture
def one_page(fhir_server: FhirTestServer) -> Iterator[FhirTestServer]:
    """The server, serving a search in one page however long."""
    size = fhir_server.state.page_size
    fhir_server.state.page_size = 20_000
    try:
        yield fhir_server
    finally:
        fhir_server.state.page_size = size


def call_for(server: FhirTestServer) -> dict[str, Any]:
    body = without_prefetch(golden_request(SLUG, "patient-view"), server, "patient")
    body["context"]["patientId"] = PATIENT
    body["prefetch"]["patient"]["id"] = PATIENT
    return body


async def answered(body: dict[str, Any]) -> tuple[int, Any]:
    app, fetcher = fetching_app(Allowlist(allow_loopback=True))
    try:
        async with client(app, signed=False) as c:
            r = await c.post(PV, json=body)
    finally:
        await fetcher.aclose()
    answer = r.json()
    return r.status_code, clinical(answer["cards"]) if r.status_code == 200 else answer


async def answered_whole(body: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as patch:
        patch.setattr(router, "FetchedPages", functools.partial(FetchedPages, threshold=10**12))
        return await answered(body)


def observations_page(server: FhirTestServer) -> int:
    """The size of the observations search page the call gets."""
    with httpx.Client(headers={"Authorization": f"Bearer {server.token}"}) as http:
        page = http.get(f"{server.base_url}/Observation", params={"patient": PATIENT})
    return len(page.content)


@pytest.mark.parametrize("stranger_at", [None, 1500])
async def test_a_large_page_gets_the_answer_the_whole_page_gets(
    one_page: FhirTestServer, monkeypatch: pytest.MonkeyPatch, stranger_at: int | None
) -> None:
    one_page.add_bundle(long_history(3000, stranger_at=stranger_at))
    assert observations_page(one_page) > OFFLOAD_BYTES
    body = call_for(one_page)
    await process_pool(1).ready()  # read by the child, not in a thread while it starts
    status, answer = await answered(body)
    assert (status, answer) == await answered_whole(body, monkeypatch)
    if stranger_at is None:
        assert status == 200 and answer
    else:
        # Another patient's result, even one the rules would not read, is never left out.
        assert status == 412
        reason = answer["error"]["reasons"]["observations"]
        assert reason.startswith("invalid FHIR in the answer") and "subject" in reason


async def _loop_cpu(body: dict[str, Any]) -> float:
    """CPU seconds the event loop's thread spends on the second of two calls; the FHIR server
    runs in a thread of its own."""
    app, fetcher = fetching_app(Allowlist(allow_loopback=True))
    # A page that arrives while the child is starting is read in a thread (not measured here).
    await process_pool(1).ready()
    try:
        async with client(app, signed=False) as c:
            for _ in range(2):
                began = time.thread_time()
                r = await c.post(PV, json=body)
                spent = time.thread_time() - began
                assert r.status_code == 200, r.text
    finally:
        await fetcher.aclose()
    return spent


async def test_a_page_near_the_caps_costs_the_event_loop_little_cpu(
    one_page: FhirTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_page.add_bundle(long_history(9_000))
    assert observations_page(one_page) > 5_000_000
    body = call_for(one_page)
    offloaded = await _loop_cpu(body)
    with monkeypatch.context() as patch:
        patch.setattr(router, "FetchedPages", functools.partial(FetchedPages, threshold=10**12))
        on_loop = await _loop_cpu(body)
    assert offloaded < 0.060, f"{offloaded * 1000:.0f} ms of CPU on the event loop"
    assert on_loop > 2 * offloaded, "the measure does not see the parsing"


@pytest.mark.parametrize("stranger_at", [None, 1500])
async def test_apply_reading_a_large_page_gets_the_answer_the_whole_page_gets(
    one_page: FhirTestServer, monkeypatch: pytest.MonkeyPatch, stranger_at: int | None
) -> None:
    """`$apply` without `data` reads the record from CDS_FHIR_BASE_URL through the same fetch."""
    one_page.add_bundle(long_history(3000, stranger_at=stranger_at))
    assert observations_page(one_page) > OFFLOAD_BYTES
    await process_pool(1).ready()
    offloaded = await apply_from(one_page, PATIENT)
    with monkeypatch.context() as patch:
        whole = functools.partial(FetchedPages, threshold=10**12)
        patch.setattr(record_source, "FetchedPages", whole)
        on_loop = await apply_from(one_page, PATIENT)
    assert (offloaded.status_code, offloaded.json()) == (on_loop.status_code, on_loop.json())
    if stranger_at is None:
        assert offloaded.status_code == 200
        assert offloaded.json()["resourceType"] == "CarePlan"
    else:
        assert offloaded.status_code == 412
        assert "observations" in offloaded.json()["issue"][0]["diagnostics"]


def test_a_large_page_whose_outcome_says_it_is_partial_fails_before_it_is_cut_down() -> None:
    """The cut-down page would hold no OperationOutcome: the whole page is judged."""
    bundle = long_history(5)
    entries = [
        {"resource": e["resource"], "search": {"mode": "match"}}
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
    ]
    issue = {"severity": "warning", "code": "incomplete", "diagnostics": "2 of 140"}
    page = {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
    whole = read_page(json.dumps(page).encode(), "observations", PATIENT, RecordScope(), START)
    assert whole.bundle is not None and whole.matches == len(entries)
    page["entry"] = [
        *entries,
        {
            "resource": {"resourceType": "OperationOutcome", "issue": [issue]},
            "search": {"mode": "outcome"},
        },
    ]
    partial = read_page(json.dumps(page).encode(), "observations", PATIENT, RecordScope(), START)
    assert (partial.bundle, partial.reason) == (None, PARTIAL_OUTCOME)
