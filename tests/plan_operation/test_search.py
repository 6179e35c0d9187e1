"""Search of the published artifacts, and the CapabilityStatement of the whole service."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from support import assert_valid_fhir, isolated_settings

from cds_service.app import create_app
from cds_service.plan_operation.artifacts import activity_definitions, plan_definitions
from plan_operation.helpers import ENGINE, START


def _service() -> TestClient:
    return TestClient(create_app(isolated_settings(auth=False), clock=lambda: START))


def test_plan_definition_search_is_a_bundle_of_the_published_ones(client: TestClient) -> None:
    bundle = client.get("/fhir/PlanDefinition").json()
    assert_valid_fhir(bundle)
    assert bundle["type"] == "searchset"
    ids = {e["resource"]["id"] for e in bundle["entry"]}
    assert ids == set(plan_definitions(ENGINE.protocol)) and bundle["total"] == len(ids)
    one = next(iter(plan_definitions(ENGINE.protocol).values()))
    by_url = client.get("/fhir/PlanDefinition", params={"url": one["url"]}).json()
    assert [e["resource"]["id"] for e in by_url["entry"]] == [one["id"]]
    assert client.get("/fhir/PlanDefinition", params={"_id": "nope"}).json()["total"] == 0
    bad = client.get("/fhir/PlanDefinition", params={"subject": "x"})
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"


def test_activity_definition_search(client: TestClient) -> None:
    bundle = client.get("/fhir/ActivityDefinition").json()
    assert_valid_fhir(bundle)
    assert {e["resource"]["id"] for e in bundle["entry"]} == set(
        activity_definitions(ENGINE.protocol)
    )
    for entry in bundle["entry"]:
        assert entry["fullUrl"].endswith(f"/fhir/ActivityDefinition/{entry['resource']['id']}")


def test_capability_statement_lists_every_interaction_served() -> None:
    with _service() as c:
        cs = c.get("/fhir/metadata").json()
        assert_valid_fhir({**cs, "fhirVersion": "4.0.0"})  # the schema's enum stops at 4.0.0
        resources: dict[str, Any] = {r["type"]: r for r in cs["rest"][0]["resource"]}
        assert set(resources) == {"PlanDefinition", "ActivityDefinition", "GuidanceResponse"}
        for kind, resource in resources.items():
            codes = [i["code"] for i in resource["interaction"]]
            assert codes == ["read", "search-type"]
            # Each declared interaction answers (GuidanceResponse: 401 without the operator).
            search = c.get(f"/fhir/{kind}")
            read = c.get(f"/fhir/{kind}/unknown-id")
            if kind == "GuidanceResponse":
                assert search.status_code == read.status_code == 401
            else:
                assert search.status_code == 200 and read.status_code == 404
        params = {p["name"] for p in resources["GuidanceResponse"]["searchParam"]}
        assert {"subject", "request", "date"} <= params
