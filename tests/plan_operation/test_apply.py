"""$apply answers with the engine's plan as a CarePlan; errors are OperationOutcomes."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support import assert_valid_fhir, golden_bundle, golden_expected, golden_slugs, resources_of

from cds_service.plan_operation.artifacts import activity_definitions, plan_definition_id
from cds_service.plan_operation.router import RecordUnavailableError
from plan_operation.helpers import ENGINE, FHIR_JSON, START, make_app, parameters, patient_id

PRACTITIONER = "Practitioner/dr-1"
ENCOUNTER = "Encounter/enc-1"
ACTIVITY_DEFINITIONS = activity_definitions(ENGINE.protocol)


def _contained(care_plan: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in care_plan.get("contained", []) if r["resourceType"] == kind]


def _apply(client: TestClient, slug: str, **extra: str) -> tuple[dict[str, Any], Any]:
    bundle = golden_bundle(slug)
    expected = golden_expected(slug)
    pid = patient_id(bundle)
    r = client.post(
        f"/fhir/PlanDefinition/{plan_definition_id(expected['profile'])}/$apply",
        json=parameters(f"Patient/{pid}", bundle, **extra),
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(FHIR_JSON)
    plan = ENGINE.plan(
        resources_of(bundle), start=START, profile=expected["profile"], patient_id=pid
    )
    return r.json(), plan


@pytest.mark.parametrize("slug", golden_slugs())
def test_apply_matches_the_engine(client: TestClient, slug: str) -> None:
    expected = golden_expected(slug)
    care_plan, plan = _apply(
        client, slug, practitioner=PRACTITIONER, encounter=ENCOUNTER, setting="outpatient"
    )
    assert_valid_fhir(care_plan)
    for resource in care_plan.get("contained", []):
        assert_valid_fhir(resource)
    assert care_plan["status"] == "draft" and care_plan["intent"] == "proposal"
    pid = patient_id(golden_bundle(slug))
    assert care_plan["subject"] == {"reference": f"Patient/{pid}"}
    assert care_plan["instantiatesCanonical"] == [
        "https://b12-cds.example.org/protocol/b12-deficiency/"
        f"{expected['profile']}|{ENGINE.protocol.version}"
    ]

    issues = _contained(care_plan, "DetectedIssue")
    s_rules = [r for r in expected["rules"] if r.startswith("S")]
    assert sorted(i["code"]["coding"][0]["code"] for i in issues) == sorted(s_rules)
    for issue in issues:
        rule_id = issue["code"]["coding"][0]["code"]
        rule = next(r for r in ENGINE.protocol.rules.safety_rules if r.id == rule_id)
        assert issue["status"] == "final"
        assert issue["code"]["text"] == rule.title
        assert (
            issue["severity"]
            == {"critical": "high", "warning": "moderate", "info": "low"}[rule.indicator]
        )
        assert issue["detail"].startswith(f"{rule.id}: {rule.summary}")
        assert issue["patient"] == {"reference": f"Patient/{pid}"}
        for ref in issue.get("implicated", []):
            kind, _, rid = ref["reference"].partition("/")
            assert kind and rid
    referenced = {s["reference"] for s in care_plan.get("supportingInfo", [])}
    assert referenced == {f"#{i['id']}" for i in issues}

    requests = _contained(care_plan, "MedicationRequest")
    groups = _contained(care_plan, "RequestGroup")
    if expected["regimen"] and expected["new_course"]:
        series = ENGINE.medication_requests(
            plan, requester=PRACTITIONER, encounter=ENCOUNTER, authored_on=START
        )[expected["regimen"]]
        assert requests == series
        assert care_plan["activity"] == [{"reference": {"reference": "#rg"}}]
        (group,) = groups
        assert group["status"] == "draft" and group["intent"] == "proposal"
        assert group["subject"] == care_plan["subject"]
        actions = group["action"]
        assert [a["id"] for a in actions] == expected["phases"]
        assert [a["resource"]["reference"] for a in actions] == [f"#{m['id']}" for m in series]
        for i, action in enumerate(actions):
            phase = plan.recommended.phases[i].phase
            if i:
                assert action["relatedAction"] == [
                    {"actionId": actions[i - 1]["id"], "relationship": "after-end"}
                ]
            else:
                assert "relatedAction" not in action
            if phase.condition:
                assert action["condition"][0]["kind"] == "applicability"
                assert action["condition"][0]["expression"]["description"] == phase.condition
            else:
                assert "condition" not in action
        ends = [p.end for p in plan.recommended.phases]
        assert care_plan["period"].get("end") == (
            ends[-1].isoformat() if all(ends) and ends[-1] else None
        )
        # The ActivityDefinitions describe the same dose, route and timing as the orders.
        for scheduled, request in zip(plan.recommended.phases, series, strict=True):
            ad = ACTIVITY_DEFINITIONS[f"{expected['regimen']}-{scheduled.phase.id}"]
            planned, ordered = ad["dosage"][0], request["dosageInstruction"][0]
            assert planned["doseAndRate"] == ordered["doseAndRate"]
            assert planned["route"] == ordered["route"]
            ordered_repeat = dict(ordered["timing"]["repeat"])
            planned_repeat = dict(planned["timing"]["repeat"])
            ordered_repeat.pop("boundsPeriod")
            planned_repeat.pop("boundsDuration", None)
            assert planned_repeat == ordered_repeat
            assert ad["productCodeableConcept"] == request["medicationCodeableConcept"]
    else:
        assert requests == [] and groups == []
        assert "activity" not in care_plan
        assert care_plan["description"]


def test_no_deficiency_explains_itself(client: TestClient) -> None:
    care_plan, _ = _apply(client, "d5-normal-b12")
    assert "activity" not in care_plan
    assert care_plan["description"].startswith("B12 deficiency not confirmed (D5)")


def test_contraindication_gives_issues_and_no_activity(client: TestClient) -> None:
    care_plan, _ = _apply(client, "s4-cobalt-allergy")
    assert "activity" not in care_plan
    (issue,) = [i for i in _contained(care_plan, "DetectedIssue") if i["id"] == "issue-S4"]
    assert issue["severity"] == "high"
    assert any(r["reference"].startswith("AllergyIntolerance/") for r in issue["implicated"])
    assert "S4" in care_plan["description"]


def _record_app(record: Any = None, error: Exception | None = None) -> TestClient:
    async def source(subject_id: str, start: date) -> Any:
        if error:
            raise error
        return record

    return TestClient(make_app(plan_record_source=source))


def test_get_form_reads_the_record_source() -> None:
    slug = "s1-polyneuropathy-metformin"
    bundle = golden_bundle(slug)
    pid = patient_id(bundle)
    seen: list[str] = []

    async def source(subject_id: str, start: date) -> list[dict[str, Any]]:
        seen.append(subject_id)
        return resources_of(bundle)

    with TestClient(make_app(plan_record_source=source)) as c:
        r = c.get(
            "/fhir/PlanDefinition/b12-deficiency-standard/$apply",
            params={"subject": f"Patient/{pid}", "practitioner": PRACTITIONER},
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith(FHIR_JSON)
        posted = c.post(
            "/fhir/PlanDefinition/b12-deficiency-standard/$apply",
            json=parameters(f"Patient/{pid}", bundle, practitioner=PRACTITIONER),
        ).json()
    assert seen == [pid]
    assert r.json() == posted
    assert len(_contained(posted, "MedicationRequest")) == 4


def test_record_source_may_return_a_bundle_and_value_reference() -> None:
    slug = "s1-polyneuropathy-metformin"
    bundle = golden_bundle(slug)
    pid = patient_id(bundle)
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "subject", "valueReference": {"reference": f"Patient/{pid}"}}],
    }
    with _record_app(record=bundle) as c:
        r = c.post("/fhir/PlanDefinition/b12-deficiency-standard/$apply", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["subject"] == {"reference": f"Patient/{pid}"}


def _assert_outcome(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(FHIR_JSON)
    outcome: dict[str, Any] = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert_valid_fhir(outcome)
    return outcome


APPLY = "/fhir/PlanDefinition/b12-deficiency-standard/$apply"


@pytest.mark.parametrize(
    "body",
    [
        parameters(subject=None, data=golden_bundle("d5-normal-b12")),
        {"resourceType": "Bundle", "type": "collection"},
        {"resourceType": "Parameters", "parameter": "subject"},
        parameters(subject="Practitioner/1"),
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "subject", "valueString": "Patient/1"}] * 2,
        },
        parameters(periodStart="not-a-date"),
    ],
)
def test_400_bad_parameters(client: TestClient, body: dict[str, Any]) -> None:
    _assert_outcome(client.post(APPLY, json=body), 400)


def test_400_body_not_json_and_get_without_subject(client: TestClient) -> None:
    _assert_outcome(
        client.post(APPLY, content=b"{not json", headers={"content-type": FHIR_JSON}), 400
    )
    _assert_outcome(client.get(APPLY), 400)


def test_404_unknown_artifacts(client: TestClient) -> None:
    for path in (
        "/fhir/PlanDefinition/nope",
        "/fhir/ActivityDefinition/nope",
        "/fhir/PlanDefinition/nope/$apply?subject=Patient/1",
    ):
        _assert_outcome(client.get(path), 404)
    _assert_outcome(client.post("/fhir/PlanDefinition/nope/$apply", json=parameters()), 404)


def test_422_invalid_data(client: TestClient) -> None:
    not_a_bundle = parameters()
    not_a_bundle["parameter"].append(
        {"name": "data", "resource": {"resourceType": "Patient", "id": "p1"}}
    )
    _assert_outcome(client.post(APPLY, json=not_a_bundle), 422)

    bundle = copy.deepcopy(golden_bundle("s1-polyneuropathy-metformin"))
    pid = patient_id(bundle)
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Observation":
            entry["resource"]["valueQuantity"]["value"] = "a lot"
    outcome = _assert_outcome(client.post(APPLY, json=parameters(f"Patient/{pid}", bundle)), 422)
    assert "Observation/" in outcome["issue"][0]["diagnostics"]

    # Data about another patient than the subject is refused rather than planned on.
    other = golden_bundle("s1-polyneuropathy-metformin")
    _assert_outcome(client.post(APPLY, json=parameters("Patient/someone-else", other)), 422)


def test_412_record_unavailable(client: TestClient) -> None:
    outcome = _assert_outcome(client.post(APPLY, json=parameters("Patient/p1")), 412)
    assert "no record source configured" in outcome["issue"][0]["diagnostics"]
    with _record_app(error=RecordUnavailableError("down")) as c:
        _assert_outcome(c.get(APPLY, params={"subject": "Patient/p1"}), 412)
    with _record_app(error=TimeoutError()) as c:
        _assert_outcome(c.post(APPLY, json=parameters("Patient/p1")), 412)
