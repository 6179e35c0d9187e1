"""Cards sized for an EHR side panel, and the right card on the right hook.

Every golden patient's treatment card: an action-first summary within 80 characters, a short
detail with one dated line per phase and no tables, no evidence line twice, citations as links
into the service's protocol page, distinct short suggestion labels; order hooks never repeat
the treatment card for an order unrelated to B12.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.app import create_app
from cds_service.engine import Engine, bundle_resources
from cds_service.hooks.cards import CardBuilder, HookContext
from cds_service.settings import Settings

from .helpers import BASE_URL, START, client, golden_request

ROOT = Path(__file__).resolve().parents[2]
PATIENTS = ROOT / "fhir_examples" / "patients"
ENGINE = Engine.build()
BUILDER = CardBuilder(ENGINE.protocol)
BASE = "https://cds.example.org"
#: The treatment card's detail on patient-view, footer line included (characters).
DETAIL_TARGET = 700
#: Golden patients allowed above the target, each with its bound and the reason.
DETAIL_EXCEPTIONS: dict[str, tuple[int, str]] = {
    "s6-severe-anaemia-hb-7-1": (
        760,
        "severe (R6) and no cause known (T6): the severity evidence, the IM-first reason, the "
        "potassium test (S6) and the lifelong-if-pernicious note (M5) all change what is ordered",
    ),
}
MAX_LINES = 16  # blank lines included
pytestmark = pytest.mark.anyio
SLUGS = sorted(p.stem for p in PATIENTS.glob("*.json") if not p.name.endswith(".expected.json"))


def _cards(slug: str, hook: str = "patient-view") -> list[dict[str, Any]]:
    expected = json.loads((PATIENTS / f"{slug}.expected.json").read_text())
    resources = bundle_resources(json.loads((PATIENTS / f"{slug}.json").read_text()))
    patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    plan = ENGINE.plan(resources, start=START, profile=expected["profile"], patient_id=patient)
    ctx = HookContext(hook, patient, base_url=BASE)
    return BUILDER.cards(plan, ENGINE.medication_requests(plan), ctx)


def _treatment(slug: str) -> dict[str, Any] | None:
    return next((c for c in _cards(slug) if c["extension"]["card"] == "treatment"), None)


TREATED = [s for s in SLUGS if _treatment(s) is not None]


def test_there_are_treatment_cards_to_check() -> None:
    assert len(TREATED) >= 20


@pytest.mark.parametrize("slug", TREATED)
def test_treatment_summary_is_action_first_within_80_characters(slug: str) -> None:
    card = _treatment(slug)
    assert card is not None
    # Listed reason: T3 (amended) names the malabsorptive cause after the action (< 140).
    limit = 139 if "T3" in card["extension"]["rules"] else 80
    assert len(card["summary"]) <= limit, card["summary"]
    assert re.match(r"Start (cyano|hydroxo)cobalamin \d+ mcg (IM|oral)\b", card["summary"])


@pytest.mark.parametrize("slug", TREATED)
def test_treatment_detail_is_short_with_one_dated_line_per_phase(slug: str) -> None:
    card = _treatment(slug)
    assert card is not None
    detail = card["detail"]
    assert len(detail.splitlines()) <= MAX_LINES
    assert "|" not in detail, "no tables"
    assert not re.search(r"\]\(|https?://", detail), "no links in the prose"
    assert "Patient/" not in detail and "Observation/" not in detail, "no raw references"
    phase_lines = [
        line for line in detail.splitlines() if re.match(r"- (\d+( \w{3})?–|From )", line)
    ]
    recommended = next(s for s in card["suggestions"] if s["isRecommended"])
    phases = [
        a for a in recommended["actions"] if a["resource"]["resourceType"] == "MedicationRequest"
    ]
    assert len(phase_lines) == len(phases)
    assert detail.splitlines()[0].startswith("**B12 deficiency: ")  # the type, first line
    assert detail.splitlines()[-1].startswith("Rules ")  # one short footer line


def detail_sizes() -> dict[str, int]:
    """The treatment card's detail length per golden patient (the card-size survey)."""
    sizes = {}
    for slug in TREATED:
        card = _treatment(slug)
        assert card is not None
        sizes[slug] = len(card["detail"])
    return sizes


@pytest.mark.parametrize("slug", TREATED)
def test_treatment_detail_is_within_its_bound(slug: str) -> None:
    size = len(_detail(slug))
    bound, _reason = DETAIL_EXCEPTIONS.get(slug, (DETAIL_TARGET, ""))
    assert size <= bound, f"{slug}: {size} characters"


def test_every_listed_exception_is_still_one() -> None:
    sizes = detail_sizes()
    for slug, (bound, reason) in DETAIL_EXCEPTIONS.items():
        assert reason and bound > DETAIL_TARGET
        assert DETAIL_TARGET < sizes[slug] <= bound, f"{slug} no longer needs an exception"
    ordered = sorted(sizes.values())
    assert ordered[len(ordered) // 2] <= 0.9 * DETAIL_TARGET, "most cards well within"


def _detail(slug: str) -> str:
    card = _treatment(slug)
    assert card is not None
    return str(card["detail"])


@pytest.mark.parametrize("slug", SLUGS)
def test_no_card_repeats_an_evidence_line_or_cites_in_the_prose(slug: str) -> None:
    for card in _cards(slug):
        lines = [line for line in card["detail"].splitlines() if line.strip()]
        assert len(lines) == len(set(lines)), card["extension"]["card"]
        assert "**Sources**" not in card["detail"]


@pytest.mark.parametrize("slug", SLUGS)
def test_no_card_gives_a_reason_in_empty_parentheses(slug: str) -> None:
    # "Severe (): IM whatever the cause" once stood where severity came from S1's flag.
    for card in _cards(slug):
        assert "()" not in card["detail"], card["extension"]["card"]


@pytest.mark.parametrize("slug", SLUGS)
def test_sources_are_links_into_the_protocol_page(slug: str) -> None:
    for card in _cards(slug):
        assert card["source"]["url"] == f"{BASE}/protocol"
        for link in card.get("links", []):
            assert link["type"] == "absolute"
            assert link["url"].startswith((f"{BASE}/protocol#", f"{BASE}/schedule?"))
            assert 0 < len(link["label"]) <= 40
        assert card["source"]["topic"]["display"] in card["detail"].splitlines()[-1] or (
            card["extension"]["profile"] in card["detail"].splitlines()[-1]
        )


def test_links_point_at_anchors_the_protocol_page_has() -> None:
    http = TestClient(create_app(Settings(auth=False), clock=lambda: START))
    page = http.get("/protocol").text
    anchors = set(re.findall(r'\sid="([^"]+)"', page))
    for slug in SLUGS:
        for card in _cards(slug):
            for link in card.get("links", []):
                if "/protocol#" in link["url"]:
                    assert link["url"].split("#")[1] in anchors, link
                else:
                    path = link["url"].removeprefix(BASE)
                    assert http.get(path).status_code == 200, link


@pytest.mark.parametrize("slug", TREATED)
def test_suggestion_labels_are_short_and_distinct(slug: str) -> None:
    card = _treatment(slug)
    assert card is not None
    labels = [s["label"] for s in card["suggestions"]]
    assert len(labels) == len(set(labels)) and all(len(label) <= 60 for label in labels)
    assert not any("[" in label or "Moles/volume" in label for label in labels)


def test_no_monitoring_card_survives_on_its_own() -> None:
    for slug in SLUGS:
        assert not any(c["extension"]["card"] == "monitoring" for c in _cards(slug))


def _order_sign(slug: str, drafts: list[dict[str, Any]]) -> dict[str, Any]:
    body = copy.deepcopy(golden_request(slug, "patient-view"))
    body["hook"] = "order-sign"
    body["context"]["draftOrders"] = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": d} for d in drafts],
    }
    return body


def _draft(patient: str, text: str, rxnorm: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": text}
    if rxnorm:
        concept["coding"] = [
            {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxnorm}
        ]
    return {
        "resourceType": "MedicationRequest",
        "id": "draft-1",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": concept,
        "subject": {"reference": f"Patient/{patient}"},
    }


async def test_unrelated_order_gets_no_treatment_card() -> None:
    """Atorvastatin signed for a patient with untreated deficiency: no alert fatigue."""
    body = golden_request("t2-pernicious-anemia-d51-0", "patient-view")
    patient = body["context"]["patientId"]
    async with client() as c:
        r = await c.post(
            "/cds-services/b12-order-sign",
            json=_order_sign(
                "t2-pernicious-anemia-d51-0", [_draft(patient, "atorvastatin 20 mg tablet")]
            ),
        )
    assert r.status_code == 200, r.text
    assert r.json()["cards"] == []


async def test_b12_relevant_order_gets_the_compact_untreated_card() -> None:
    body = golden_request("t2-pernicious-anemia-d51-0", "patient-view")
    patient = body["context"]["patientId"]
    folic = _draft(patient, "folic acid 5 mg tablet")
    async with client() as c:
        r = await c.post(
            "/cds-services/b12-order-sign", json=_order_sign("t2-pernicious-anemia-d51-0", [folic])
        )
    cards = {card["extension"]["card"]: card for card in r.json()["cards"]}
    assert "treatment" not in cards
    compact = cards["untreated-deficiency"]
    assert compact["indicator"] == "info" and len(compact["summary"]) < 140
    assert len(compact["detail"]) < 300
    assert len(compact["suggestions"]) == 1 and compact["suggestions"][0]["isRecommended"]
    assert "safety-S3" in cards  # folic acid without B12: the order's own finding


async def test_critical_findings_still_show_on_an_unrelated_order() -> None:
    body = golden_request("s4-cobalt-allergy", "patient-view")
    patient = body["context"]["patientId"]
    async with client() as c:
        r = await c.post(
            "/cds-services/b12-order-sign",
            json=_order_sign("s4-cobalt-allergy", [_draft(patient, "atorvastatin 20 mg tablet")]),
        )
    assert [c["extension"]["card"] for c in r.json()["cards"]] == ["safety-S4"]


async def test_source_url_is_the_services_protocol_page() -> None:
    async with client() as c:
        r = await c.post(
            "/cds-services/b12-patient-view",
            json=golden_request("t2-pernicious-anemia-d51-0", "patient-view"),
        )
    for card in r.json()["cards"]:
        assert card["source"]["url"] == f"{BASE_URL}/protocol"
        assert all(link["url"].startswith(BASE_URL + "/") for link in card.get("links", []))
    assert date.fromisoformat("2026-12-01") == START


def test_S8_without_a_birth_date_the_treatment_card_says_age_was_not_checked() -> None:
    slug = TREATED[0]
    expected = json.loads((PATIENTS / f"{slug}.expected.json").read_text())
    resources = bundle_resources(json.loads((PATIENTS / f"{slug}.json").read_text()))
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    note = ENGINE.protocol.rules.age_not_recorded
    assert note and note not in _detail(slug)
    ageless = [
        {k: v for k, v in r.items() if k != "birthDate"} if r is patient else r for r in resources
    ]
    plan = ENGINE.plan(ageless, start=START, profile=expected["profile"], patient_id=patient["id"])
    ctx = HookContext("patient-view", patient["id"], base_url=BASE)
    cards = BUILDER.cards(plan, ENGINE.medication_requests(plan), ctx)
    treatment = next(c for c in cards if c["extension"]["card"] == "treatment")
    assert note in treatment["detail"]
