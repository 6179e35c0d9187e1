"""The fallback FHIR fetch client against real loopback HTTP servers (no mocked transport)."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
from collections.abc import Collection, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fhirserver import FhirTestServer

from cds_service.fetch import (
    Allowlist,
    DataUnavailable,
    FhirFetcher,
    unavailable_outcome,
    unavailable_reason,
)
from cds_service.fhir.search_completeness import PARTIAL_OUTCOME, PARTIAL_TOTAL

from .stub import Canned, StubServer

T = TypeVar("T")
GOLDEN = Path(__file__).resolve().parents[2] / "fhir_examples" / "patients"
# Every type the test server can search; ServiceRequest is not one of them.
SEARCH_TYPES = (
    "Condition",
    "Observation",
    "MedicationRequest",
    "MedicationStatement",
    "Procedure",
    "AllergyIntolerance",
)
PATIENT = "b12gp-002"  # t2-pernicious-anemia-d51-0: Patient, 2 Conditions, 3 Observations
QUERIES = {
    "patient": f"Patient/{PATIENT}",
    "conditions": f"Condition?patient={PATIENT}&clinical-status=active,recurrence,relapse",
    "observations": f"Observation?patient={PATIENT}&code=http://loinc.org|14685-2,"
    "http://loinc.org|2132-9",
    "medications": f"MedicationRequest?patient={PATIENT}",
}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def fetch(
    base: str | None,
    queries: Mapping[str, str],
    *,
    token: str | None = "test-fhir-token",
    allowlist: Allowlist | None = None,
    allow: tuple[str, ...] = (),
    optional: Collection[str] = (),
    **settings: Any,
) -> dict[str, Any]:
    """One fetch with a fresh fetcher whose allowlist holds just ``base`` by default."""
    if allowlist is None:
        allowlist = Allowlist([base] if base else [])
    async with FhirFetcher(allowlist, **settings) as fetcher:
        return await fetcher.fetch(
            base, token, dict(queries), allow=allow, optional=frozenset(optional)
        )


def unavailable(base: str | None, queries: Mapping[str, str], **kwargs: Any) -> dict[str, str]:
    with pytest.raises(DataUnavailable) as info:
        run(fetch(base, queries, **kwargs))
    return info.value.details


def ids(bundle: dict[str, Any]) -> list[str]:
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return sorted(e["resource"]["id"] for e in bundle["entry"])


def golden_bundles() -> Iterator[dict[str, Any]]:
    for path in sorted(GOLDEN.glob("*.json")):
        if not path.name.endswith(".expected.json"):
            yield json.loads(path.read_text(encoding="utf-8"))


def patient_bundle(patient_id: str, observations: int) -> dict[str, Any]:
    resources: list[dict[str, Any]] = [{"resourceType": "Patient", "id": patient_id}]
    for i in range(observations):
        resources.append(
            {
                "resourceType": "Observation",
                "id": f"{patient_id}-o{i}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2132-9"}]},
                "subject": {"reference": f"Patient/{patient_id}"},
            }
        )
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }


# --- token handling ---------------------------------------------------------------------------


def test_token_is_forwarded_exactly_and_never_logged(
    fhir_server: FhirTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # Everything, aiohttp's loggers included.
    data = run(fetch(fhir_server.base_url, QUERIES))
    assert set(data) == set(QUERIES)
    assert len(fhir_server.requests) == len(QUERIES)
    assert all(r.authorization == "Bearer test-fhir-token" for r in fhir_server.requests)
    assert caplog.records
    for record in caplog.records:
        assert "test-fhir-token" not in record.getMessage()
    # Our own logs name keys and resource types, never queries (which carry patient ids): a
    # debug line per query and one summary line per call.
    ours = [r for r in caplog.records if r.name == "cds_service.fetch"]
    assert [r.levelno for r in ours].count(logging.DEBUG) == len(QUERIES)
    summaries = [r.getMessage() for r in ours if r.levelno == logging.INFO]
    assert len(summaries) == 1 and f"queries={len(QUERIES)} ok={len(QUERIES)}" in summaries[0]
    assert not any(PATIENT in r.getMessage() for r in ours)
    assert any("key='observations' type=Observation status=200" in r.getMessage() for r in ours)


def test_token_absent_from_errors_logs_and_fetcher(
    fhir_server: FhirTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fhir_server.token = "another-token"  # The EHR's token has expired: every call gets a 401.

    async def go() -> tuple[FhirFetcher, DataUnavailable]:
        async with FhirFetcher(Allowlist([fhir_server.base_url])) as fetcher:
            with pytest.raises(DataUnavailable) as info:
                await fetcher.fetch(fhir_server.base_url, "test-fhir-token", QUERIES)
            return fetcher, info.value

    fetcher, error = run(go())
    assert error.details == dict.fromkeys(QUERIES, "FHIR server answered 401")
    assert "test-fhir-token" not in str(error) + repr(error.details) + repr(error.args)
    assert "test-fhir-token" not in repr(vars(fetcher))
    assert error.__cause__ is None
    assert not any("test-fhir-token" in r.getMessage() for r in caplog.records)


def test_no_token_sends_no_authorization(fhir_server: FhirTestServer) -> None:
    fhir_server.token = None
    data = run(fetch(fhir_server.base_url, {"patient": f"Patient/{PATIENT}"}, token=None))
    assert data["patient"]["id"] == PATIENT
    assert fhir_server.requests[0].authorization is None


def test_token_with_control_characters_is_refused_without_a_call(
    fhir_server: FhirTestServer,
) -> None:
    details = unavailable(fhir_server.base_url, QUERIES, token="abc\r\nX-Evil: 1")
    assert set(details.values()) == {"access token is not a valid bearer token"}
    assert fhir_server.requests == []


# --- data ------------------------------------------------------------------------------------


def test_every_golden_patient_is_fetched_completely(fhir_server: FhirTestServer) -> None:
    bundles = list(golden_bundles())
    assert len(bundles) > 40

    async def go() -> None:
        async with FhirFetcher(Allowlist([fhir_server.base_url])) as fetcher:
            for bundle in bundles:
                resources = [e["resource"] for e in bundle["entry"]]
                patient = next(r for r in resources if r["resourceType"] == "Patient")
                queries = {"patient": f"Patient/{patient['id']}"}
                for kind in SEARCH_TYPES:
                    queries[kind] = f"{kind}?patient={patient['id']}"
                data = await fetcher.fetch(fhir_server.base_url, "test-fhir-token", queries)
                assert data["patient"] == patient
                for kind in SEARCH_TYPES:
                    expected = sorted(r["id"] for r in resources if r["resourceType"] == kind)
                    assert ids(data[kind]) == expected, (bundle.get("id"), kind)
                    assert data[kind]["total"] == len(expected)

    run(go())


def test_search_filters_are_sent_as_rendered(fhir_server: FhirTestServer) -> None:
    data = run(fetch(fhir_server.base_url, QUERIES))
    assert ids(data["conditions"]) and ids(data["observations"])
    observation_request = next(r for r in fhir_server.requests if r.path.endswith("Observation"))
    assert ("code", "http://loinc.org|14685-2,http://loinc.org|2132-9") in (
        observation_request.params
    )
    assert observation_request.ignored_params == []


def test_paging_is_followed_and_concatenated(fhir_server: FhirTestServer) -> None:
    fhir_server.add_bundle(patient_bundle("pg1", 7))
    query = {"observations": "Observation?patient=pg1&_count=2"}
    data = run(fetch(fhir_server.base_url, query, max_pages=4))
    assert ids(data["observations"]) == sorted(f"pg1-o{i}" for i in range(7))
    assert "link" not in data["observations"]
    assert len(fhir_server.requests) == 4
    assert all(r.authorization == "Bearer test-fhir-token" for r in fhir_server.requests)


def test_more_pages_than_the_cap_is_unavailable_not_truncated(fhir_server: FhirTestServer) -> None:
    fhir_server.add_bundle(patient_bundle("pg1", 7))
    query = {"observations": "Observation?patient=pg1&_count=2"}
    details = unavailable(fhir_server.base_url, query, max_pages=3)
    assert details == {"observations": "more than 3 pages of results"}
    assert len(fhir_server.requests) == 3


def test_default_page_cap_is_ten(fhir_server: FhirTestServer) -> None:
    fhir_server.add_bundle(patient_bundle("pg1", 11))
    details = unavailable(fhir_server.base_url, {"o": "Observation?patient=pg1&_count=1"})
    assert details == {"o": "more than 10 pages of results"}
    assert len(fhir_server.requests) == 10


OBSERVATION = {"resourceType": "Observation", "status": "final", "code": {"text": "B12"}}
MEDICATION = {"resourceType": "Medication", "id": "m1"}


def searchset(*entries: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", **fields, "entry": list(entries)}


def match(resource_id: str) -> dict[str, Any]:
    return {"resource": {**OBSERVATION, "id": resource_id}, "search": {"mode": "match"}}


def outcome(severity: str, code: str, diagnostics: str, **search: str) -> dict[str, Any]:
    issue = {"severity": severity, "code": code, "diagnostics": diagnostics}
    entry: dict[str, Any] = {"resource": {"resourceType": "OperationOutcome", "issue": [issue]}}
    if search:
        entry["search"] = search
    return entry


PARTIAL_PAGES = {
    "error outcome": (
        searchset(match("a"), outcome("error", "exception", "shard 2 down", mode="outcome")),
        PARTIAL_OUTCOME,
    ),
    "fatal outcome without a mode": (
        searchset(match("a"), outcome("fatal", "exception", "backend down")),
        PARTIAL_OUTCOME,
    ),
    "truncation warning": (
        searchset(
            match("a"),
            outcome("warning", "processing", "results truncated to 1 of 140", mode="outcome"),
            total=1,
        ),
        PARTIAL_OUTCOME,
    ),
    "total above the matches, no next link": (
        searchset(match("a"), match("b"), total=140),
        PARTIAL_TOTAL,
    ),
    "includes not counted as matches": (
        searchset(match("a"), {"resource": MEDICATION, "search": {"mode": "include"}}, total=2),
        PARTIAL_TOTAL,
    ),
}


@pytest.mark.parametrize("page, reason", PARTIAL_PAGES.values(), ids=PARTIAL_PAGES.keys())
def test_a_search_answer_that_says_it_is_partial_is_unavailable(
    page: dict[str, Any], reason: str
) -> None:
    with StubServer() as stub:
        stub.routes["/fhir/Observation?patient=1"] = Canned.fhir(page)
        assert unavailable(stub.base_url, {"o": "Observation?patient=1"}) == {"o": reason}
        data = run(fetch(stub.base_url, {"o": "Observation?patient=1"}, optional={"o"}))
        assert unavailable_reason(data["o"]) == reason


WHOLE_PAGES = {
    "total equal to the matches": searchset(match("a"), match("b"), total=2),
    "no total": searchset(match("a"), match("b")),
    "an include beside the matches": searchset(
        match("a"), {"resource": MEDICATION, "search": {"mode": "include"}}, total=1
    ),
    "information outcome": searchset(
        match("a"),
        outcome("information", "informational", "results truncated", mode="outcome"),
        total=1,
    ),
    "warning that leaves nothing out": searchset(
        match("a"), outcome("warning", "not-supported", "_sort ignored", mode="outcome"), total=1
    ),
}


@pytest.mark.parametrize("page", WHOLE_PAGES.values(), ids=WHOLE_PAGES.keys())
def test_a_whole_search_answer_is_read(page: dict[str, Any]) -> None:
    with StubServer() as stub:
        stub.routes["/fhir/Observation?patient=1"] = Canned.fhir(page)
        data = run(fetch(stub.base_url, {"o": "Observation?patient=1"}))
        assert data["o"]["entry"] == page["entry"]


@pytest.mark.parametrize("last, reason", [([match("c")], None), ([], PARTIAL_TOTAL)])
def test_pages_are_checked_against_the_total_once_all_are_in(
    last: list[dict[str, Any]], reason: str | None
) -> None:
    next_page = [{"relation": "next", "url": "Observation?page=2"}]
    with StubServer() as stub:
        stub.routes["/fhir/Observation?patient=1"] = Canned.fhir(
            searchset(match("a"), match("b"), total=3, link=next_page)
        )
        stub.routes["/fhir/Observation?page=2"] = Canned.fhir(searchset(*last, total=3))
        if reason is None:
            data = run(fetch(stub.base_url, {"o": "Observation?patient=1"}))
            assert ids(data["o"]) == ["a", "b", "c"] and data["o"]["total"] == 3
        else:
            assert unavailable(stub.base_url, {"o": "Observation?patient=1"}) == {"o": reason}


# --- failures --------------------------------------------------------------------------------

FAILURES = {
    "401": "FHIR server answered 401",
    "403": "FHIR server answered 403",
    "404": "FHIR server answered 404",
    "500": "FHIR server answered 500",
    "invalid": "invalid FHIR in the answer",
    "garbage": "answer is not JSON",
}
# The "invalid" search answer is a well-formed searchset whose Observation has a numeric status:
# its content is for the reader to judge (the hook layer answers 412), not the fetcher.
SEARCH_FAILURES = {mode: reason for mode, reason in FAILURES.items() if mode != "invalid"}


@pytest.mark.parametrize("mode", sorted(SEARCH_FAILURES))
def test_failure_of_a_required_key_raises_naming_it(fhir_server: FhirTestServer, mode: str) -> None:
    fhir_server.set_mode(mode, "Observation")
    details = unavailable(fhir_server.base_url, QUERIES)
    assert details == {"observations": FAILURES[mode]}


@pytest.mark.parametrize("mode", sorted(FAILURES))
def test_failure_of_a_read_raises_naming_it(fhir_server: FhirTestServer, mode: str) -> None:
    fhir_server.set_mode(mode, "Patient")
    assert unavailable(fhir_server.base_url, QUERIES) == {"patient": FAILURES[mode]}


def test_search_content_is_left_to_the_reader(fhir_server: FhirTestServer) -> None:
    fhir_server.set_mode("invalid", "Observation")
    data = run(fetch(fhir_server.base_url, QUERIES))
    assert [e["resource"] for e in data["observations"]["entry"]] == [
        {"resourceType": "Observation", "status": 12}
    ]


@pytest.mark.parametrize("mode", sorted(SEARCH_FAILURES))
def test_failure_of_an_optional_key_comes_back_as_operation_outcome(
    fhir_server: FhirTestServer, mode: str
) -> None:
    fhir_server.set_mode(mode, "Observation")
    data = run(fetch(fhir_server.base_url, QUERIES, optional={"observations", "conditions"}))
    assert data["observations"] == unavailable_outcome(FAILURES[mode])
    assert unavailable_reason(data["observations"]) == FAILURES[mode]
    assert data["observations"]["issue"][0]["severity"] == "error"
    assert data["observations"]["issue"][0]["code"] == "exception"
    assert data["patient"]["id"] == PATIENT
    assert unavailable_reason(data["patient"]) is None
    assert ids(data["conditions"])


def test_only_required_keys_are_named_when_optional_ones_fail_too(
    fhir_server: FhirTestServer,
) -> None:
    fhir_server.set_mode("500")
    details = unavailable(fhir_server.base_url, QUERIES, optional={"observations"})
    assert details == dict.fromkeys(set(QUERIES) - {"observations"}, "FHIR server answered 500")


def test_unknown_patient_read_is_unavailable(fhir_server: FhirTestServer) -> None:
    details = unavailable(fhir_server.base_url, {"patient": "Patient/nobody"})
    assert details == {"patient": "FHIR server answered 404"}


def test_slow_server_hits_the_per_query_timeout(fhir_server: FhirTestServer) -> None:
    fhir_server.set_mode("slow", seconds=1.5)
    started = time.monotonic()
    details = unavailable(fhir_server.base_url, QUERIES, timeout=0.5, deadline=4.0)
    assert time.monotonic() - started < 0.5 + 0.5
    assert details == dict.fromkeys(QUERIES, "timed out after 0.5 s")


def test_slow_server_hits_the_overall_deadline(fhir_server: FhirTestServer) -> None:
    fhir_server.set_mode("slow", seconds=1.5)
    started = time.monotonic()
    details = unavailable(fhir_server.base_url, QUERIES, timeout=2.0, deadline=0.8)
    assert time.monotonic() - started < 0.8 + 0.5
    assert details == dict.fromkeys(QUERIES, "timed out at the 0.8 s overall deadline")


def test_one_slow_query_fails_alone(fhir_server: FhirTestServer) -> None:
    fhir_server.set_mode("slow", "Observation", seconds=1.5)
    data = run(fetch(fhir_server.base_url, QUERIES, timeout=0.5, optional={"observations"}))
    assert unavailable_reason(data["observations"]) == "timed out after 0.5 s"
    assert data["patient"]["id"] == PATIENT


def test_queries_run_concurrently(fhir_server: FhirTestServer) -> None:
    fhir_server.set_mode("slow", seconds=0.5)
    started = time.monotonic()
    data = run(fetch(fhir_server.base_url, QUERIES))
    elapsed = time.monotonic() - started
    assert len(QUERIES) == 4 and set(data) == set(QUERIES)
    assert elapsed < 1.2, elapsed  # Sequential would take at least 4 x 0.5 s.


def test_connection_refused_is_unavailable() -> None:
    with StubServer() as stub:
        base = stub.base_url
    # The stub is gone, so nothing listens on its port any more.
    assert unavailable(base, {"patient": "Patient/1"}) == {
        "patient": "could not connect to the FHIR server"
    }


# --- server-side request forgery guard -------------------------------------------------------


def test_server_off_the_allowlist_is_never_contacted(fhir_server: FhirTestServer) -> None:
    with FhirTestServer(golden_bundles()) as other:
        details = unavailable(other.base_url, QUERIES, allowlist=Allowlist([fhir_server.base_url]))
        assert details == dict.fromkeys(QUERIES, "server not on the allowlist")
        data = run(
            fetch(
                other.base_url,
                QUERIES,
                allowlist=Allowlist([fhir_server.base_url]),
                optional=set(QUERIES),
            )
        )
        assert set(data) == set(QUERIES)
        assert all(unavailable_reason(v) == "server not on the allowlist" for v in data.values())
        assert other.requests == []
        assert fhir_server.requests == []


def test_per_call_allow_adds_the_clients_own_servers(fhir_server: FhirTestServer) -> None:
    with FhirTestServer(golden_bundles()) as other:
        data = run(fetch(other.base_url, QUERIES, allowlist=Allowlist(), allow=(other.base_url,)))
        assert data["patient"]["id"] == PATIENT
        assert len(other.requests) == len(QUERIES)


def test_empty_allowlist_with_auth_on_turns_fetch_off(fhir_server: FhirTestServer) -> None:
    allowlist = Allowlist.from_env(auth_enabled=True, value=None)
    assert not allowlist.enabled
    details = unavailable(fhir_server.base_url, QUERIES, allowlist=allowlist)
    assert set(details.values()) == {"server not on the allowlist"}
    assert fhir_server.requests == []


def test_dev_mode_allows_loopback_servers(fhir_server: FhirTestServer) -> None:
    allowlist = Allowlist.from_env(auth_enabled=False, value="")
    data = run(fetch(fhir_server.base_url, QUERIES, allowlist=allowlist))
    assert data["patient"]["id"] == PATIENT


def test_missing_fhir_server_is_unavailable(fhir_server: FhirTestServer) -> None:
    allowlist = Allowlist([fhir_server.base_url])
    assert unavailable(None, QUERIES, allowlist=allowlist) == dict.fromkeys(
        QUERIES, "no fhirServer in the request"
    )
    assert unavailable("", QUERIES, allowlist=allowlist) == dict.fromkeys(
        QUERIES, "no fhirServer in the request"
    )


@pytest.mark.parametrize(
    "query",
    [
        "../admin",
        "Patient/../../admin",
        "Patient/%2e%2e/admin",
        "/Patient/1",
        "http://169.254.169.254/latest",
        "//evil.example/Patient/1",
        "Patient/1#x",
        "Patient\\1",
        "",
    ],
)
def test_queries_that_could_leave_the_base_are_refused(
    fhir_server: FhirTestServer, query: str
) -> None:
    details = unavailable(fhir_server.base_url, {"k": query})
    assert details == {"k": "query is not a relative FHIR read or search"}
    assert fhir_server.requests == []


def test_next_link_to_another_host_is_not_followed() -> None:
    with StubServer() as stub, FhirTestServer() as other:
        page = {
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "next", "url": f"{other.base_url}/Observation?patient=1"}],
            "entry": [],
        }
        stub.routes["/fhir/Observation?patient=1"] = Canned.fhir(page)
        details = unavailable(stub.base_url, {"o": "Observation?patient=1"})
        assert details == {"o": "next page link leaves the FHIR server"}
        assert other.requests == []
        assert len(stub.requests) == 1


@pytest.mark.parametrize("path", ["/other/Observation?page=2", "/fhir-evil/Observation?page=2"])
def test_next_link_outside_the_base_path_is_not_followed(path: str) -> None:
    with StubServer() as stub:
        page = {
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "next", "url": stub.origin + path}],
        }
        stub.routes["/fhir/Observation?patient=1"] = Canned.fhir(page)
        details = unavailable(stub.base_url, {"o": "Observation?patient=1"})
        assert details == {"o": "next page link leaves the FHIR server"}
        assert len(stub.requests) == 1


def test_relative_next_link_under_the_base_is_followed() -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "B12"}}
    first = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": "Observation?page=2"}],
        "entry": [{"resource": {**obs, "id": "a"}}],
    }
    second = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {**obs, "id": "b"}}],
    }
    with StubServer() as stub:
        stub.routes["/fhir/Observation?patient=1"] = Canned.fhir(first)
        stub.routes["/fhir/Observation?page=2"] = Canned.fhir(second)
        data = run(fetch(stub.base_url, {"o": "Observation?patient=1"}))
        assert ids(data["o"]) == ["a", "b"]
        assert all(
            r.headers.get("Authorization") == "Bearer test-fhir-token" for r in stub.requests
        )


def test_redirects_are_not_followed() -> None:
    with StubServer() as stub, FhirTestServer() as other:
        location = {"Location": f"{other.base_url}/Patient/1"}
        stub.routes["/fhir/Patient/1"] = Canned(302, b"", location)
        details = unavailable(stub.base_url, {"p": "Patient/1"})
        assert details == {"p": "FHIR server answered 302"}
        assert other.requests == []


# --- answers that are not what was asked for -------------------------------------------------


@pytest.mark.parametrize(
    ("canned", "reason"),
    [
        (
            Canned(200, b'{"resourceType": "Patient", "id": "1"}', {"Content-Type": "text/html"}),
            "answer is not FHIR JSON (content type)",
        ),
        (
            Canned.fhir(
                {"resourceType": "Observation", "id": "1", "status": "final", "code": {"text": "x"}}
            ),
            "answer is not a Patient",
        ),
        (Canned.fhir({"resourceType": "Patient", "id": "2"}), "answer is a different Patient"),
        (Canned.fhir({"id": "1"}), "invalid FHIR in the answer"),
        (
            Canned(200, b"[1, 2]", {"Content-Type": "application/json"}),
            "invalid FHIR in the answer",
        ),
        (Canned.fhir({"resourceType": "NotAType", "id": "1"}), "invalid FHIR in the answer"),
    ],
)
def test_read_answers_are_checked(canned: Canned, reason: str) -> None:
    with StubServer() as stub:
        stub.routes["/fhir/Patient/1"] = canned
        assert unavailable(stub.base_url, {"p": "Patient/1"}) == {"p": reason}


@pytest.mark.parametrize(
    ("page", "reason"),
    [
        ({"resourceType": "Patient", "id": "1"}, "search answer is not a Bundle"),
        ({"resourceType": "Bundle", "type": "collection"}, "invalid FHIR in the answer"),
        (
            {"resourceType": "Bundle", "type": "searchset", "entry": [{"fullUrl": "x"}]},
            "invalid FHIR in the answer",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": {"id": "no-type"}}],
            },
            "invalid FHIR in the answer",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": {"resourceType": "NotAType", "id": "1"}}],
            },
            "invalid FHIR in the answer",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": {"resourceType": "Observation", "id": 1}}],
            },
            "invalid FHIR in the answer",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": {"resourceType": "Coding", "code": "x"}}],
            },
            "invalid FHIR in the answer",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": {"resourceType": "DomainResource", "id": "1"}}],
            },
            "invalid FHIR in the answer",
        ),
        (
            {"resourceType": "Bundle", "type": "searchset", "link": {"relation": "next"}},
            "invalid FHIR in the answer",
        ),
        (
            {"resourceType": "Bundle", "type": "searchset", "total": "many"},
            "invalid FHIR in the answer",
        ),
    ],
)
def test_search_answers_are_checked(page: dict[str, Any], reason: str) -> None:
    with StubServer() as stub:
        stub.routes["/fhir/Observation?patient=1"] = Canned.fhir(page)
        assert unavailable(stub.base_url, {"o": "Observation?patient=1"}) == {"o": reason}


def test_accepts_plain_json_and_fhir_json_with_parameters() -> None:
    patient = json.dumps({"resourceType": "Patient", "id": "1"}).encode()
    with StubServer() as stub:
        stub.routes["/fhir/Patient/1"] = Canned(
            200, patient, {"Content-Type": "application/json; charset=utf-8"}
        )
        stub.routes["/fhir/Patient/2"] = Canned(
            200,
            patient.replace(b'"1"', b'"2"'),
            {"Content-Type": "application/fhir+json; fhirVersion=4.0"},
        )
        data = run(fetch(stub.base_url, {"a": "Patient/1", "b": "Patient/2"}))
        assert data["a"]["id"] == "1" and data["b"]["id"] == "2"
        assert all(r.headers.get("Accept") == "application/fhir+json" for r in stub.requests)


def test_oversized_answer_is_unavailable() -> None:
    with StubServer() as stub:
        patient = {"resourceType": "Patient", "id": "1", "name": [{"text": "x" * 5000}]}
        stub.routes["/fhir/Patient/1"] = Canned.fhir(patient)
        details = unavailable(stub.base_url, {"p": "Patient/1"}, max_bytes=1000)
        assert details == {"p": "answer larger than 1000 bytes"}


def test_gzip_answers_are_read_and_the_size_cap_applies_to_the_decompressed_body() -> None:
    patient = {"resourceType": "Patient", "id": "1", "name": [{"text": "x" * 5000}]}
    packed = gzip.compress(json.dumps(patient).encode())
    assert len(packed) < 1000
    with StubServer() as stub:
        stub.routes["/fhir/Patient/1"] = Canned(
            200, packed, {"Content-Type": "application/fhir+json", "Content-Encoding": "gzip"}
        )
        assert run(fetch(stub.base_url, {"p": "Patient/1"}))["p"] == patient
        details = unavailable(stub.base_url, {"p": "Patient/1"}, max_bytes=1000)
        assert details == {"p": "answer larger than 1000 bytes"}


def test_cookies_do_not_carry_over_between_calls() -> None:
    with StubServer() as stub:
        patient = {"resourceType": "Patient", "id": "1"}
        stub.routes["/fhir/Patient/1"] = Canned.fhir(patient, **{"Set-Cookie": "SESSION=abc"})

        async def go() -> None:
            async with FhirFetcher(Allowlist([stub.base_url])) as fetcher:
                await fetcher.fetch(stub.base_url, "t1", {"p": "Patient/1"})
                await fetcher.fetch(stub.base_url, "t2", {"p": "Patient/1"})

        run(go())
        assert [r.headers.get("Authorization") for r in stub.requests] == [
            "Bearer t1",
            "Bearer t2",
        ]
        assert all("Cookie" not in r.headers for r in stub.requests)


def test_one_client_is_shared_and_closed(fhir_server: FhirTestServer) -> None:
    async def go() -> None:
        fetcher = FhirFetcher(Allowlist([fhir_server.base_url]))
        await fetcher.fetch(fhir_server.base_url, "test-fhir-token", {"p": f"Patient/{PATIENT}"})
        client = fetcher.client
        await fetcher.fetch(fhir_server.base_url, "test-fhir-token", QUERIES)
        assert fetcher.client is client
        await fetcher.aclose()
        assert client.closed

    run(go())


def test_empty_queries_need_no_server() -> None:
    assert run(fetch(None, {})) == {}
