"""The test FHIR server is itself a dependency of the integration tests, so it is held to the
behaviour it claims, over real HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .app import INVALID_SEARCH_BODY, FhirState
from .runner import FhirTestServer

TOKEN = "s3cret"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def observation(ident: str, code: str, category: str, status: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": ident,
        "status": status,
        "category": [concept(OBS_CATEGORY, category)],
        "code": concept(LOINC, code),
        "effectiveDateTime": when,
    }


def bundle(patient_id: str, *resources: dict[str, Any]) -> dict[str, Any]:
    patient = {"resourceType": "Patient", "id": patient_id}
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in (patient, *resources)],
    }


P1 = bundle(
    "p1",
    observation("o1", "2132-9", "laboratory", "final", "2024-01-15T10:00:00Z"),
    observation("o2", "2132-9", "laboratory", "final", "2024-03-01"),
    observation("o3", "29463-7", "vital-signs", "preliminary", "2024-06-10T08:00:00+02:00"),
    {
        "resourceType": "Condition",
        "id": "c1",
        "clinicalStatus": concept(CLINICAL, "active"),
        "category": [concept("http://x", "problem-list-item")],
        "code": concept(SNOMED, "190634004"),
    },
    {
        "resourceType": "Condition",
        "id": "c2",
        "clinicalStatus": concept(CLINICAL, "resolved"),
        "code": concept("http://hl7.org/fhir/sid/icd-10-cm", "D51.0"),
    },
    {
        "resourceType": "MedicationRequest",
        "id": "mr1",
        "status": "active",
        "medicationCodeableConcept": concept("http://www.nlm.nih.gov/research/umls/rxnorm", "1"),
    },
    {
        "resourceType": "AllergyIntolerance",
        "id": "a1",
        "clinicalStatus": concept(CLINICAL, "active"),
        "category": ["medication"],
    },
    {"resourceType": "Procedure", "id": "pr1", "status": "completed"},
)
P2 = bundle("p2", observation("o5", "2132-9", "laboratory", "final", "2024-02-01"))


@pytest.fixture(scope="module")
def server() -> Iterator[FhirTestServer]:
    with FhirTestServer([P1, P2], token=TOKEN) as running:
        yield running


@pytest.fixture
def client(server: FhirTestServer) -> Iterator[httpx.Client]:
    server.reset()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=5) as http:
        yield http


def ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {e["resource"]["id"] for e in response.json()["entry"]}


def test_patient_read(client: httpx.Client) -> None:
    response = client.get("/Patient/p1")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fhir+json"
    assert response.json() == {"resourceType": "Patient", "id": "p1"}

    missing = client.get("/Patient/nobody")
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "params",
    [{"patient": "p1"}, {"patient": "Patient/p1"}, {"subject": "Patient/p1"}],
)
def test_search_by_patient_returns_searchset(
    client: httpx.Client, server: FhirTestServer, params: dict[str, str]
) -> None:
    response = client.get("/Observation", params=params)
    body = response.json()
    assert response.headers["content-type"] == "application/fhir+json"
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "searchset"
    assert body["total"] == 3
    assert ids(response) == {"o1", "o2", "o3"}
    entry = body["entry"][0]
    assert entry["fullUrl"] == f"{server.base_url}/Observation/{entry['resource']['id']}"
    assert entry["search"] == {"mode": "match"}
    assert body["link"][0]["relation"] == "self"
    assert body["link"][0]["url"].startswith(f"{server.base_url}/Observation?")


def test_search_is_scoped_to_the_patient(client: httpx.Client) -> None:
    assert ids(client.get("/Observation", params={"patient": "p2"})) == {"o5"}
    assert ids(client.get("/Observation", params={"patient": "unknown"})) == set()
    assert client.get("/Observation").status_code == 400
    assert client.get("/Observation", params={"subject": "Group/g1"}).status_code == 400
    assert client.get("/Basic", params={"patient": "p1"}).status_code == 404


@pytest.mark.parametrize(
    ("resource_type", "code", "expected"),
    [
        ("Observation", f"{LOINC}|2132-9", {"o1", "o2"}),
        ("Observation", "2132-9", {"o1", "o2"}),
        ("Observation", "29463-7,2132-9", {"o1", "o2", "o3"}),
        ("Observation", f"{SNOMED}|2132-9", set()),
        ("Observation", f"{LOINC}|", {"o1", "o2", "o3"}),
        ("Condition", f"{SNOMED}|190634004,D51.0", {"c1", "c2"}),
        ("MedicationRequest", "1", {"mr1"}),
    ],
)
def test_search_by_code(
    client: httpx.Client, resource_type: str, code: str, expected: set[str]
) -> None:
    response = client.get(f"/{resource_type}", params={"patient": "p1", "code": code})
    assert ids(response) == expected


@pytest.mark.parametrize(
    ("resource_type", "params", "expected"),
    [
        ("Observation", {"status": "preliminary"}, {"o3"}),
        ("Observation", {"status": "final,preliminary"}, {"o1", "o2", "o3"}),
        ("Procedure", {"status": "in-progress"}, set()),
        ("Condition", {"clinical-status": "active"}, {"c1"}),
        ("Condition", {"clinical-status": f"{CLINICAL}|resolved"}, {"c2"}),
        ("AllergyIntolerance", {"clinical-status": "inactive"}, set()),
        ("Observation", {"category": "laboratory"}, {"o1", "o2"}),
        ("Observation", {"category": f"{OBS_CATEGORY}|vital-signs"}, {"o3"}),
        ("AllergyIntolerance", {"category": "medication"}, {"a1"}),
    ],
)
def test_search_by_status_and_category(
    client: httpx.Client, resource_type: str, params: dict[str, str], expected: set[str]
) -> None:
    assert ids(client.get(f"/{resource_type}", params={"patient": "p1", **params})) == expected


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        (["ge2024-03-01"], {"o2", "o3"}),
        (["gt2024-03-01"], {"o3"}),
        (["lt2024-03-01"], {"o1"}),
        (["le2024-01-15T10:00:00Z"], {"o1"}),
        (["2024-03"], {"o2"}),
        (["ge2024-01-01", "lt2024-04-01"], {"o1", "o2"}),
        # o3 is 06:00 UTC, written with a +02:00 offset.
        (["lt2024-06-10T07:00:00Z"], {"o1", "o2", "o3"}),
        (["ge2024-06-10T07:00:00Z"], set()),
    ],
)
def test_search_by_date(client: httpx.Client, dates: list[str], expected: set[str]) -> None:
    params: list[tuple[str, str | int | float | bool | None]] = [("patient", "p1")]
    params += [("date", d) for d in dates]
    assert ids(client.get("/Observation", params=params)) == expected


def test_invalid_date_is_rejected(client: httpx.Client) -> None:
    response = client.get("/Observation", params={"patient": "p1", "date": "ge2024-13"})
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_unknown_params_are_ignored_and_recorded(
    client: httpx.Client, server: FhirTestServer
) -> None:
    params = {"patient": "p1", "code": "2132-9", "_sort": "-date", "clinical-status": "active"}
    assert ids(client.get("/Observation", params=params)) == {"o1", "o2"}
    assert server.requests[-1].ignored_params == ["_sort", "clinical-status"]


def test_paging_follows_next_links(client: httpx.Client, server: FhirTestServer) -> None:
    url: str | None = f"{server.base_url}/Observation?patient=p1&_count=2"
    pages = []
    while url:
        body = client.get(url).json()
        pages.append([e["resource"]["id"] for e in body["entry"]])
        assert body["total"] == 3
        url = next((link["url"] for link in body["link"] if link["relation"] == "next"), None)
        assert url is None or url.startswith(f"{server.base_url}/Observation?")
    assert pages == [["o1", "o2"], ["o3"]]

    expired = client.get("/Observation", params={"_getpages": "nope", "_offset": "2"})
    assert expired.status_code == 410


def test_default_page_size_is_50(client: httpx.Client, server: FhirTestServer) -> None:
    many = [observation(f"m{i}", "2132-9", "laboratory", "final", "2024-01-01") for i in range(51)]
    server.add_bundle(bundle("p3", *many))
    body = client.get("/Observation", params={"patient": "p3"}).json()
    assert (body["total"], len(body["entry"])) == (51, 50)
    assert [link["relation"] for link in body["link"]] == ["self", "next"]


def test_bearer_token_is_required(client: httpx.Client, server: FhirTestServer) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = httpx.get(f"{server.base_url}/Patient/p1", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["resourceType"] == "OperationOutcome"
    assert client.get("/Patient/p1").status_code == 200


@pytest.mark.parametrize("mode", ["401", "403", "404", "500"])
def test_status_modes(client: httpx.Client, server: FhirTestServer, mode: str) -> None:
    server.set_mode(mode)
    response = client.get("/Patient/p1")
    assert response.status_code == int(mode)
    assert response.json()["resourceType"] == "OperationOutcome"


def test_invalid_mode_returns_json_that_is_not_fhir(
    client: httpx.Client, server: FhirTestServer
) -> None:
    server.set_mode("invalid")
    search = client.get("/Observation", params={"patient": "p1"})
    assert (search.status_code, search.json()) == (200, INVALID_SEARCH_BODY)
    read = client.get("/Patient/p1")
    assert (read.status_code, read.json()) == (200, {"resourceType": "Patient", "id": 12})


def test_garbage_mode_returns_non_json(client: httpx.Client, server: FhirTestServer) -> None:
    server.set_mode("garbage")
    response = client.get("/Patient/p1")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_modes_are_scoped_transient_and_clearable(
    client: httpx.Client, server: FhirTestServer
) -> None:
    server.set_mode("500", "Observation")
    server.set_mode("403", "Patient/p2")
    assert client.get("/Observation", params={"patient": "p1"}).status_code == 500
    assert client.get("/Patient/p1").status_code == 200
    assert client.get("/Patient/p2").status_code == 403
    server.clear_mode("Observation")
    assert client.get("/Observation", params={"patient": "p1"}).status_code == 200
    server.clear_mode()
    assert client.get("/Patient/p2").status_code == 200

    server.set_mode("500", times=1)
    assert [client.get("/Patient/p1").status_code for _ in range(2)] == [500, 200]
    with pytest.raises(ValueError):
        server.set_mode("teapot")


def test_slow_mode_delays_without_blocking_other_requests(
    client: httpx.Client, server: FhirTestServer
) -> None:
    server.set_mode("slow", "Observation", seconds=0.6)
    slow: dict[str, Any] = {}

    def search() -> None:
        started = time.monotonic()
        slow["ids"] = ids(client.get("/Observation", params={"patient": "p2"}))
        slow["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=search)
    thread.start()
    time.sleep(0.1)
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{server.base_url}/Patient/p1", headers=headers).status_code == 200
    assert time.monotonic() - started < 0.3
    thread.join()
    assert slow["ids"] == {"o5"}
    assert slow["elapsed"] >= 0.6


def test_requests_are_recorded(client: httpx.Client, server: FhirTestServer) -> None:
    client.get("/Observation", params={"patient": "p1", "code": "2132-9"})
    httpx.get(f"{server.base_url}/Patient/p1")
    first, second = server.requests
    assert (first.method, first.path, first.query) == (
        "GET",
        "/fhir/Observation",
        "patient=p1&code=2132-9",
    )
    assert first.params == [("patient", "p1"), ("code", "2132-9")]
    assert (first.authorization, first.status) == (f"Bearer {TOKEN}", 200)
    assert (second.authorization, second.status) == (None, 401)
    server.clear_requests()
    assert server.requests == []


def test_reset_drops_added_bundles_and_token_changes(
    client: httpx.Client, server: FhirTestServer
) -> None:
    server.add_bundle(bundle("p9"))
    server.token = None
    assert httpx.get(f"{server.base_url}/Patient/p9").status_code == 200
    server.reset()
    assert server.token == TOKEN
    assert client.get("/Patient/p9").status_code == 404


def test_loads_bundles_from_a_directory(tmp_path: Path) -> None:
    (tmp_path / "p1.json").write_text(json.dumps(P1))
    (tmp_path / "notes.json").write_text(json.dumps({"resourceType": "Patient", "id": "x"}))
    (tmp_path / "readme.txt").write_text("not json")
    with FhirTestServer(tmp_path) as running:
        assert httpx.get(f"{running.base_url}/Patient/p1").status_code == 200
        assert httpx.get(f"{running.base_url}/Patient/x").status_code == 404
        base_url = running.base_url
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/Patient/p1")


def test_rejects_bundles_that_are_not_one_patient() -> None:
    with pytest.raises(ValueError):
        FhirState([bundle("p1"), bundle("p1")])
    with pytest.raises(ValueError):
        FhirState([{"resourceType": "Bundle", "entry": []}])


def test_shared_fixture_starts_clean(fhir_server: FhirTestServer) -> None:
    headers = {"Authorization": f"Bearer {fhir_server.token}"}
    response = httpx.get(f"{fhir_server.base_url}/Patient/none", headers=headers)
    assert response.status_code == 404
    assert len(fhir_server.requests) == 1
