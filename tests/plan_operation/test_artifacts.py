"""PlanDefinitions and ActivityDefinitions are generated from the protocol tables."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class
from support import assert_valid_fhir, schema_errors

from cds_service.engine import Engine
from cds_service.plan_operation.artifacts import (
    ArtifactError,
    activity_definitions,
    plan_definition_id,
    plan_definitions,
    when_cql,
    when_text,
)
from cds_service.protocol import default_protocol, load_protocol
from cds_service.protocol.loader import DATA_DIR
from plan_operation.helpers import FHIR_JSON, make_app

PROTOCOL = default_protocol()
PLAN_DEFINITIONS = plan_definitions(PROTOCOL)
ACTIVITY_DEFINITIONS = activity_definitions(PROTOCOL)


def _walk(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for action in actions:
        out.append(action)
        out += _walk(action.get("action", []))
    return out


def test_one_plan_definition_per_profile() -> None:
    assert sorted(PLAN_DEFINITIONS) == sorted(
        f"b12-deficiency-{name}" for name in PROTOCOL.profiles.profiles
    )
    for name in PROTOCOL.profiles.profiles:
        pd = PLAN_DEFINITIONS[plan_definition_id(name)]
        assert pd["url"].startswith(PROTOCOL.url)
        assert pd["version"] == PROTOCOL.version
        assert pd["status"] == "active"
        assert pd["type"]["coding"][0] == {
            "system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
            "code": "clinical-protocol",
            "display": "Clinical Protocol",
        }
        labels = {a["label"] for a in pd["relatedArtifact"]}
        assert set(PROTOCOL.profile(name).citations) <= labels
        assert labels <= set(PROTOCOL.sources.sources)


@pytest.mark.parametrize("pd_id", sorted(PLAN_DEFINITIONS))
def test_plan_definition_is_valid_fhir(pd_id: str) -> None:
    assert_valid_fhir(PLAN_DEFINITIONS[pd_id])


@pytest.mark.parametrize("ad_id", sorted(ACTIVITY_DEFINITIONS))
def test_activity_definition_is_valid_fhir(ad_id: str) -> None:
    ad = ACTIVITY_DEFINITIONS[ad_id]
    assert_valid_fhir(ad)
    assert ad["kind"] == "MedicationRequest" and ad["intent"] == "proposal"
    assert ad["productCodeableConcept"]["text"]
    dose = ad["dosage"][0]["doseAndRate"][0]["doseQuantity"]
    assert dose["system"] == "http://unitsofmeasure.org" and dose["code"] == "ug"


def test_every_regimen_phase_has_an_activity_definition() -> None:
    expected = {
        f"{rid}-{p.id}": p for rid, r in PROTOCOL.regimens.regimens.items() for p in r.phases
    }
    assert set(ACTIVITY_DEFINITIONS) == set(expected)
    for ad_id, phase in expected.items():
        ad = ACTIVITY_DEFINITIONS[ad_id]
        medication = PROTOCOL.regimens.medications[phase.medication]
        codings = ad["productCodeableConcept"].get("coding", [])
        assert [c["code"] for c in codings] == (
            [medication.coding.code] if medication.coding else []
        )
        assert ad["dosage"][0]["doseAndRate"][0]["doseQuantity"]["value"] == phase.dose_ug


@pytest.mark.parametrize("profile", sorted(PROTOCOL.profiles.profiles))
def test_actions_follow_the_regimen_rules(profile: str) -> None:
    pd = PLAN_DEFINITIONS[plan_definition_id(profile)]
    rules = PROTOCOL.profile(profile).regimen_rules
    options = PROTOCOL.profile(profile).option_rules
    assert [a["prefix"] for a in pd["action"]] == [r.id for r in (*rules, *options)]
    urls = {ad["url"] for ad in ACTIVITY_DEFINITIONS.values()}
    ids = [a["id"] for a in _walk(pd["action"])]
    assert len(ids) == len(set(ids)), "action ids are unique"
    for option, action in zip(options, pd["action"][len(rules) :], strict=True):
        # R7: the options, each an alternative only, with the option rule's condition.
        assert action["condition"][0]["expression"]["description"] == when_text(
            option.when, PROTOCOL
        )
        assert [r["id"].split("-", 2)[2] for r in action["action"]] == list(
            dict.fromkeys(option.beside.values())
        )
        assert {r["prefix"] for r in action["action"]} == {"Alternative"}
    for rule, action in zip(rules, pd["action"][: len(rules)], strict=True):
        condition = action["condition"][0]
        assert condition["kind"] == "applicability"
        assert condition["expression"]["description"] == when_text(rule.when, PROTOCOL)
        regimens = [rule.recommended, *(a.regimen for a in rule.alternatives)]
        assert [r["title"] for r in action["action"]] == [
            PROTOCOL.regimens.regimens[r].title for r in regimens
        ]
        for regimen_id, regimen_action in zip(regimens, action["action"], strict=True):
            phases = PROTOCOL.regimens.regimens[regimen_id].phases
            sub = regimen_action["action"]
            assert [a["title"] for a in sub] == [p.title for p in phases]
            for i, (phase, phase_action) in enumerate(zip(phases, sub, strict=True)):
                assert phase_action["definitionCanonical"] in urls
                assert phase_action["definitionCanonical"].endswith(f"/{regimen_id}-{phase.id}")
                if i == 0:
                    assert "relatedAction" not in phase_action
                else:
                    assert phase_action["relatedAction"] == [
                        {"actionId": sub[i - 1]["id"], "relationship": "after-end"}
                    ]
                assert ("condition" in phase_action) == bool(phase.condition)


def test_when_expressions_read_plainly() -> None:
    assert when_text({"type": "pernicious-anemia"}, PROTOCOL) == "type is pernicious-anemia"
    assert when_cql({"type": "pernicious-anemia"}) == "\"Deficiency Type\" = 'pernicious-anemia'"
    assert (
        when_text({"type": ["dietary", "drug-associated"]}, PROTOCOL)
        == "type is one of dietary, drug-associated"
    )
    assert when_cql({"flag": "S1"}) == "'S1' in \"Safety Findings\""
    assert "S1" in when_text({"flag": "S1"}, PROTOCOL)
    with pytest.raises(ArtifactError):
        when_cql({"age_below": "adult_age"})


def test_endpoints_serve_the_generated_artifacts(client: TestClient) -> None:
    for pd_id, pd in PLAN_DEFINITIONS.items():
        r = client.get(f"/fhir/PlanDefinition/{pd_id}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(FHIR_JSON)
        assert r.json() == pd
    for ad_id, ad in ACTIVITY_DEFINITIONS.items():
        r = client.get(f"/fhir/ActivityDefinition/{ad_id}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(FHIR_JSON)
        assert r.json() == ad


def _edited_protocol(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    regimens = data / "regimens.yaml"
    text = regimens.read_text()
    old = (
        "- {id: loading, title: Loading (daily), medication: cyanocobalamin-injection, "
        "dose_ug: 1000"
    )
    # cyanocobalamin-im-1000 first, then -im-then-oral and the R7 -im-then-sublingual and
    # -im-1000-individual; only the first is edited.
    assert text.index(old) < text.index("cyanocobalamin-im-then-oral:")
    regimens.write_text(text.replace(old, old.replace("dose_ug: 1000", "dose_ug: 1500"), 1))
    return data


def test_artifacts_change_when_a_table_changes(tmp_path: Path) -> None:
    edited = load_protocol(_edited_protocol(tmp_path))
    pds, ads = plan_definitions(edited), activity_definitions(edited)
    ad_id = "cyanocobalamin-im-1000-loading"
    dose = ads[ad_id]["dosage"][0]["doseAndRate"][0]["doseQuantity"]["value"]
    assert dose == 1500
    assert ACTIVITY_DEFINITIONS[ad_id]["dosage"][0]["doseAndRate"][0]["doseQuantity"]["value"] == (
        1000
    )
    assert "1500 mcg" in ads[ad_id]["dosage"][0]["text"]
    assert pds["b12-deficiency-standard"] != PLAN_DEFINITIONS["b12-deficiency-standard"]
    assert {k: v for k, v in ads.items() if k != ad_id} == {
        k: v for k, v in ACTIVITY_DEFINITIONS.items() if k != ad_id
    }

    with TestClient(make_app(Engine.build(edited))) as c:
        served = c.get("/fhir/PlanDefinition/b12-deficiency-standard").json()
        assert served == pds["b12-deficiency-standard"]
        assert c.get(f"/fhir/ActivityDefinition/{ad_id}").json() == ads[ad_id]


def test_capability_statement(client: TestClient) -> None:
    r = client.get("/fhir/metadata")
    assert r.status_code == 200 and r.headers["content-type"].startswith(FHIR_JSON)
    cs = r.json()
    # The official R4 (4.0.1) JSON schema's FHIRVersion enum stops at 4.0.0, a known defect of
    # that schema: the only schema error allowed is that one; the rest must validate.
    errors = schema_errors(cs)
    assert len(errors) <= 1 and all(e.startswith("['fhirVersion']") for e in errors), errors
    assert_valid_fhir({**cs, "fhirVersion": "4.0.0"})
    get_fhir_model_class("CapabilityStatement").model_validate(cs)
    assert cs["fhirVersion"] == "4.0.1" and cs["kind"] == "instance"
    assert "json" in cs["format"]
    resources = {res["type"]: res for res in cs["rest"][0]["resource"]}
    assert cs["rest"][0]["mode"] == "server"
    assert resources["PlanDefinition"]["operation"] == [
        {
            "name": "apply",
            "definition": "http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply",
        }
    ]
    for kind in ("PlanDefinition", "ActivityDefinition"):
        assert resources[kind]["interaction"] == [{"code": "read"}, {"code": "search-type"}]
