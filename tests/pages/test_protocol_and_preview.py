"""The protocol page is generated from the tables; the preview is off unless enabled."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from support import isolated_settings

from cds_service.app import create_app
from cds_service.protocol import default_protocol

from .support import START

PROTOCOL = default_protocol()


@pytest.fixture(scope="module")
def http() -> TestClient:
    return TestClient(create_app(isolated_settings(auth=False), clock=lambda: START))


@pytest.fixture(scope="module")
def preview_http() -> TestClient:
    return TestClient(create_app(isolated_settings(auth=False, preview=True), clock=lambda: START))


def _ids(html: str) -> set[str]:
    return set(re.findall(r'\sid="([^"]+)"', html))


@pytest.mark.parametrize("profile", sorted(PROTOCOL.profiles.profiles))
def test_protocol_page_has_an_anchor_per_rule_regimen_and_source(
    http: TestClient, profile: str
) -> None:
    answer = http.get(f"/protocol?profile={profile}")
    assert answer.status_code == 200
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    ids = _ids(answer.text)
    prof = PROTOCOL.profiles.profiles[profile]
    rules = PROTOCOL.rules
    expected = {*rules.deficiency_rules, *(r.id for r in rules.type_rules)}
    expected |= {r.id for r in rules.safety_rules} | {m.id for m in rules.monitoring_rules}
    expected |= {r.id for r in prof.regimen_rules}
    expected |= {f"source-{k}" for k in PROTOCOL.sources.sources}
    expected |= {f"regimen-{r.recommended}" for r in prof.regimen_rules}
    assert expected <= ids, sorted(expected - ids)
    assert len(re.findall(r'\sid="', answer.text)) == len(ids), "duplicate ids"
    for threshold in prof.thresholds:
        assert threshold.replace("_", " ") in answer.text
    assert prof.version in answer.text and PROTOCOL.version in answer.text


def test_protocol_page_shows_the_table_text(http: TestClient) -> None:
    html = http.get("/protocol").text
    for rule in PROTOCOL.rules.safety_rules:
        assert rule.summary.replace("'", "&#39;").replace('"', "&#34;") in html
    assert html.count('<th scope="col">') > 10  # table semantics


def test_unknown_profile_is_400(http: TestClient) -> None:
    assert http.get("/protocol?profile=nope").status_code == 400


def test_preview_is_off_unless_enabled(http: TestClient) -> None:
    assert http.get("/preview").status_code == 404
    assert http.post("/preview", data={"patient": "t4-metformin"}).status_code == 404


def test_preview_renders_the_cards_of_a_golden_patient(preview_http: TestClient) -> None:
    answer = preview_http.post(
        "/preview", data={"patient": "t2-pernicious-anemia-d51-0", "hook": "patient-view"}
    )
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    assert answer.text.count('<article class="card') >= 2  # once per panel width
    assert "Side panel (400 px)" in answer.text


def test_preview_answers_with_the_chosen_profile(preview_http: TestClient) -> None:
    """A NICE golden patient: under nice-ng239 its low active B12 confirms the deficiency."""
    form = {"patient": "nice-active-b12-low-borderline", "hook": "patient-view"}
    standard = preview_http.post("/preview", data=form).text
    nice = preview_http.post("/preview", data={**form, "profile": "nice-ng239"}).text
    assert "Start hydroxocobalamin" not in standard and "Start hydroxocobalamin" in nice
    assert "profile nice-ng239" in nice
    bad = preview_http.post("/preview", data={**form, "profile": "nope"})
    assert bad.status_code == 400 and 'role="alert"' in bad.text


def test_preview_escapes_a_pasted_bundle(preview_http: TestClient) -> None:
    bundle = (
        '{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": '
        '{"resourceType": "Patient", "id": "x", "birthDate": "1950-01-01"}}, {"resource": '
        '{"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/x"}, '
        '"clinicalStatus": {"coding": [{"system": '
        '"http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}, '
        '"code": {"text": "<script>alert(1)</script>", "coding": [{"system": '
        '"http://hl7.org/fhir/sid/icd-10-cm", "code": "D51.0"}]}}}]}'
    )
    answer = preview_http.post("/preview", data={"bundle": bundle, "hook": "patient-view"})
    assert answer.status_code == 200
    assert "<script>" not in answer.text


@pytest.mark.parametrize(
    "form", [{"patient": "../../etc/passwd"}, {"bundle": "not json"}, {"bundle": "[]"}, {}]
)
def test_preview_bad_input_is_named(preview_http: TestClient, form: dict[str, str]) -> None:
    answer = preview_http.post("/preview", data=form)
    assert answer.status_code == 400
    assert 'role="alert"' in answer.text
